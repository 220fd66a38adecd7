"""``smsledger simulate``: the local Twilio on --twilio-port, and traffic through the ingester."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

from aiohttp import web

from schema.settings import Settings
from sim.incidents import Incident
from sim.traffic import Traffic, TrafficConfig
from sim.twilio import SimConfig, TwilioSim, create_sim_app


@dataclass(frozen=True)
class SimulateOptions:
    """`smsledger simulate`'s options (its --help explains each)."""

    ingest_url: str
    rate: float
    duration: float
    seed: int
    twilio_port: int
    numbers: int
    time_scale: float
    history_days: int
    drain: float
    incident: tuple[Incident, ...] = ()


async def run_simulation(args: SimulateOptions, settings: Settings) -> int:
    sim = TwilioSim(SimConfig(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.reveal(), seed=args.seed, numbers=args.numbers,
        time_scale=args.time_scale, history_days=args.history_days,
        our_number=settings.twilio_phone_number or "+15005550006",
        verify_service_sid=settings.twilio_verify_service_sid or "VA" + "0" * 32,
        incidents=args.incident))
    runner = web.AppRunner(create_sim_app(sim), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.twilio_port)
    await site.start()
    public = (settings.public_url if settings.public_url != "http://127.0.0.1:8080"
              else args.ingest_url)
    print(f"simulated Twilio API on http://127.0.0.1:{args.twilio_port} "
          f"({len(sim.numbers)} numbers, seed {args.seed}); traffic at {args.rate}/s to "
          f"{args.ingest_url}" + (f" for {args.duration:g} s" if args.duration else ""),
          flush=True)
    traffic = Traffic(sim, TrafficConfig(
        ingest_url=args.ingest_url.rstrip("/"), public_url=public.rstrip("/"),
        api_key=settings.api_key.reveal(),
        our_number=settings.twilio_phone_number or "+15005550006", rate=args.rate,
        duration=args.duration, seed=args.seed,
        verify=bool(settings.twilio_verify_service_sid),
        report_every_s=0 if args.duration else 15, incidents=args.incident))
    loop = asyncio.get_running_loop()
    run = asyncio.ensure_future(traffic.run())
    loop.add_signal_handler(signal.SIGTERM, run.cancel)
    drained = ""
    try:
        await run
        # Callbacks of the last sends are still on their way (delivery takes seconds, with a
        # slow tail): wait for them, but only --drain seconds, so that --duration S ends
        # within S plus that bound.
        waited, dropped = await sim.drain(timeout_s=args.drain)
        drained = (f"; waited up to {args.drain:g} s for {waited} pending callback(s), "
                   f"{dropped} dropped")
    except asyncio.CancelledError:
        pass
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await runner.cleanup()
    print("simulator: " + traffic.summary() + drained, flush=True)
    return 0
