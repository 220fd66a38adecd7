"""Driving realistic traffic through the real path: sends through the ingester's /v1 API (its
twilio client reaches this simulator), sends "made elsewhere" reported to /v1/events/sent,
Verify codes, and inbound replies with STOP/START/HELP. Deterministic from the seed, bounded
by ``duration`` (0: until cancelled)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

from sim import world
from sim.incidents import Incident
from sim.twilio import TwilioSim

BODIES = {
    "otp": "Your Acme code is {code}. It expires in 10 minutes.",
    "transactional": "Your order #{order} has shipped and arrives Thursday.",
    "marketing": "Black Friday SALE: 30% off everything today only. Reply STOP to opt out.",
}
REPLIES = ["Thanks!", "ok", "Who is this?", "Got it, thank you", "HELP"]


@dataclasses.dataclass
class TrafficConfig:
    ingest_url: str
    public_url: str
    api_key: str = dataclasses.field(repr=False)
    our_number: str
    rate: float = 5.0
    duration: float = 30.0
    count: int = 0                   # exactly this many actions, paced by rate (0: by duration)
    seed: int = 1
    verify: bool = False
    report_every_s: float = 0.0      # print a progress line this often (0: never)
    incidents: tuple[Incident, ...] = ()


class Traffic:
    def __init__(self, sim: TwilioSim, config: TrafficConfig) -> None:
        self.sim, self.config = sim, config
        self.rng = random.Random(config.seed + 1)
        self.counts: collections.Counter[str] = collections.Counter()
        self.stopped: dict[str, float] = {}
        self._slots = asyncio.Semaphore(32)
        self._session: aiohttp.ClientSession | None = None
        # Its own generator: the seed's ordinary traffic stays the same with or without one.
        self.pump_start = random.Random(config.seed + 3).randrange(10_000)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"}

    async def _post(self, path: str, body: Any) -> tuple[int, Any]:
        assert self._session is not None
        async with self._session.post(self.config.ingest_url + path, json=body,
                                      headers=self._headers()) as resp:
            try:
                data = await resp.json()
            except (aiohttp.ContentTypeError, ValueError):
                data = None
            return resp.status, data

    def _category(self) -> str:
        return self.rng.choices(["otp", "transactional", "marketing"], [0.5, 0.35, 0.15])[0]

    def _body(self, category: str) -> str:
        return BODIES[category].format(code=self.rng.randrange(100000, 999999),
                                       order=self.rng.randrange(10000, 99999))

    async def send(self, number: world.Number) -> None:
        category = self._category()
        status, data = await self._post("/v1/messages", {
            "to": number.e164, "body": self._body(category), "category": category,
            "tags": ["sim", category]})
        if status == 201:
            self.counts["sent"] += 1
        elif status == 409:
            self.counts["refused (opted out/suppressed)"] += 1
        elif status < 500 and data and "twilio_code" in data:
            self.counts[f"twilio refused {data['twilio_code']}"] += 1
        else:
            self.counts[f"http {status}"] += 1

    async def send_elsewhere(self, number: world.Number) -> None:
        """The user's own app sent it through Twilio; smsledger is told afterwards."""
        category = self._category()
        status, message = self.sim.create_message({
            "To": number.e164, "From": self.config.our_number, "Body": self._body(category),
            "StatusCallback": self.config.public_url + "/twilio/status"}, [])
        if status != 201:
            self.counts["elsewhere refused by twilio"] += 1
            return
        code, _ = await self._post("/v1/events/sent", {
            "sid": message["sid"], "to": number.e164, "from": self.config.our_number,
            "category": category, "sent_at": datetime.now(UTC).isoformat()})
        self.counts["reported sent elsewhere" if code == 200 else f"report http {code}"] += 1

    async def invalid(self) -> None:
        status, _ = await self._post("/v1/messages", {"to": "+1555", "body": "hi"})
        self.counts["invalid number refused (400)" if status == 400 else f"http {status}"] += 1

    async def inbound(self, number: world.Number) -> None:
        now = time.monotonic()
        if number.profile == "stopper" and number.e164 not in self.stopped:
            body = "STOP"
            self.stopped[number.e164] = now
        elif number.e164 in self.stopped and now - self.stopped[number.e164] > 20 and \
                self.rng.random() < 0.3:
            body = "START"
            del self.stopped[number.e164]
        else:
            body = self.rng.choice(REPLIES)
        status = await self.sim.send_inbound(
            self.config.ingest_url + "/twilio/inbound", number.e164, self.config.our_number,
            body, sign_url=self.config.public_url + "/twilio/inbound")
        self.counts[f"inbound {body if body in ('STOP', 'START', 'HELP') else 'reply'}"
                    + ("" if status == 200 else f" http {status}")] += 1

    async def verify(self, number: world.Number) -> None:
        status, _ = await self._post("/v1/verify/start", {"to": number.e164})
        if status != 201:
            self.counts[f"verify start http {status}"] += 1
            return
        await asyncio.sleep(self.rng.uniform(0.05, 0.5) * self.sim.config.time_scale * 10)
        code = self.sim.verifications[number.e164]["code"]
        if self.rng.random() < 0.15:
            code = "000000" if code != "000000" else "111111"
        status, data = await self._post("/v1/verify/check", {"to": number.e164, "code": code})
        self.counts[f"verify {data.get('status') if data else status}"] += 1

    async def pump(self, prefix: str, n: int) -> None:
        """One send of an SMS pumping incident: an OTP to the next number in ``prefix``,
        never approved (the numbers belong to the attacker)."""
        to = f"{prefix}{(self.pump_start + n) % 10_000:04d}"
        if self.config.verify:
            status, _ = await self._post("/v1/verify/start", {"to": to})
            self.counts[f"pumping verify http {status}"] += 1
        else:
            status, _ = await self._post("/v1/messages", {
                "to": to, "body": self._body("otp"), "category": "otp", "tags": ["sim"]})
            self.counts[f"pumping otp http {status}"] += 1

    async def _incidents(self, elapsed_s: float, n: int) -> None:
        for incident in self.config.incidents:
            if incident.kind == "pumping" and incident.active(elapsed_s):
                self.sim.pumped_prefixes.add(incident.target)
                async with self._slots:
                    try:
                        await self.pump(incident.target, n)
                    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                        self.counts[f"ingester unreachable ({type(exc).__name__})"] += 1
            elif incident.kind == "pumping":
                self.sim.pumped_prefixes.discard(incident.target)

    async def _one(self) -> None:
        number = world.pick(self.rng, self.sim.numbers)
        roll = self.rng.random()
        async with self._slots:
            try:
                if roll < 0.02:
                    await self.invalid()
                elif roll < 0.08:
                    await self.inbound(number)
                elif roll < 0.15:
                    await self.send_elsewhere(number)
                elif roll < 0.19 and self.config.verify:
                    await self.verify(number)
                else:
                    await self.send(number)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.counts[f"ingester unreachable ({type(exc).__name__})"] += 1

    async def run(self) -> collections.Counter[str]:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        tasks: set[asyncio.Task[None]] = set()
        started = last_report = time.monotonic()
        interval = 1.0 / self.config.rate
        n = 0
        try:
            # Open with replies from people who opt out or ask for help, so every view of the
            # data (opt-outs included) has something within the first seconds.
            stoppers = [x for x in self.sim.numbers if x.profile == "stopper"][:2]
            for number in stoppers:
                await self.inbound(number)
            if self.sim.numbers:
                await self.sim.send_inbound(
                    self.config.ingest_url + "/twilio/inbound", self.sim.numbers[0].e164,
                    self.config.our_number, "HELP",
                    sign_url=self.config.public_url + "/twilio/inbound")
            while (n < self.config.count if self.config.count else
                   not self.config.duration or
                   time.monotonic() - started < self.config.duration):
                task = asyncio.create_task(self._one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if self.config.incidents:
                    staged = asyncio.create_task(
                        self._incidents(time.monotonic() - started, n))
                    tasks.add(staged)
                    staged.add_done_callback(tasks.discard)
                n += 1
                # Pace against the clock, not the loop, so the rate holds under load.
                await asyncio.sleep(max(0.0, started + n * interval - time.monotonic()))
                if self.config.report_every_s and \
                        time.monotonic() - last_report >= self.config.report_every_s:
                    last_report = time.monotonic()
                    print("simulator: " + self.summary(), flush=True)
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._session.close()
        return self.counts

    def summary(self) -> str:
        stats = self.sim.stats
        parts = [f"{k}: {v}" for k, v in sorted(self.counts.items())]
        parts.append(f"callbacks delivered: {stats.callbacks_sent}, "
                     f"failed: {stats.callbacks_failed}")
        return "; ".join(parts)
