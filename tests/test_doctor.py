"""``smsledger doctor`` against the simulated Twilio and a real ingester: it passes on a right
setup and names what is wrong on a broken one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestServer

from ingest.app import create_app
from schema.settings import Secret, Settings
from sim.twilio import SimConfig, TwilioSim, create_sim_app
from smsledger.devdb import free_port
from smsledger.doctor import Finding, diagnose, render
from tests.conftest import TEST_TOKEN

ACCOUNT = "AC" + "3" * 32
VERIFY = "VA" + "4" * 32
SERVICE = "MG" + "5" * 32
NUMBER = "+15005550006"


@contextlib.asynccontextmanager
async def deployment(db_url: str, data_dir: Path, *, sms_url: str | None = None,
                     service_status: str | None = None, token: str = TEST_TOKEN,
                     ) -> AsyncIterator[Settings]:
    """An ingester on a real port and a simulated Twilio whose Console points at it (or at
    ``sms_url`` / ``service_status`` where given)."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    sim = TwilioSim(SimConfig(
        account_sid=ACCOUNT, auth_token=TEST_TOKEN, numbers=10, verify_service_sid=VERIFY,
        our_number=NUMBER, number_sms_url=public + "/twilio/inbound" if sms_url is None
        else sms_url, messaging_service_sid=SERVICE,
        service_inbound_url=public + "/twilio/inbound",
        service_status_callback=public + "/twilio/status" if service_status is None
        else service_status))
    async with TestServer(create_sim_app(sim)) as sim_server:
        settings = Settings(
            database_url=db_url, twilio_account_sid=ACCOUNT, twilio_auth_token=Secret(token),
            twilio_phone_number=NUMBER, twilio_messaging_service_sid=SERVICE,
            twilio_verify_service_sid=VERIFY,
            twilio_api_url=str(sim_server.make_url("")).rstrip("/"), public_url=public,
            data_dir=data_dir)
        async with TestServer(create_app(settings), port=port):
            yield settings


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


async def test_doctor_passes_on_a_right_setup(db_url: str, tmp_path: Path) -> None:
    async with deployment(db_url, tmp_path) as settings:
        findings = await diagnose(settings)
    checks = by_check(findings)
    assert not [f for f in findings if f.level == "fail"], render(findings)
    for name in ("database", "migrations", "ingester", "twilio", "sender", "messaging service",
                 "status callback", "verify", "dashboard"):
        assert checks[name].level == "ok", render(findings)
    # A loopback public URL works with the simulator but is no place for real Twilio.
    assert checks["public URL"].level == "warn"
    assert "loopback" in checks["public URL"].text
    assert render(findings).endswith("all good (1 warning(s))")


async def test_doctor_names_a_wrong_inbound_url(db_url: str, tmp_path: Path) -> None:
    async with deployment(db_url, tmp_path, sms_url="https://old.example.com/sms") as settings:
        findings = await diagnose(dataclass_replace(settings, twilio_messaging_service_sid=""))
    sender = by_check(findings)["sender"]
    assert sender.level == "fail"
    assert "https://old.example.com/sms" in sender.text
    assert settings.public_url + "/twilio/inbound" in sender.text


async def test_doctor_names_a_wrong_status_callback(db_url: str, tmp_path: Path) -> None:
    async with deployment(db_url, tmp_path, service_status="") as settings:
        findings = await diagnose(settings)
    callback = by_check(findings)["status callback"]
    assert callback.level == "fail"
    assert "not set" in callback.text and "/twilio/status" in callback.text


async def test_doctor_names_bad_credentials(db_url: str, tmp_path: Path) -> None:
    async with deployment(db_url, tmp_path) as settings:
        findings = await diagnose(dataclass_replace(
            settings, twilio_auth_token=Secret("wrong-token-" + "0" * 20)))
    twilio = by_check(findings)["twilio"]
    assert twilio.level == "fail"
    assert "HTTP 401" in twilio.text and "TWILIO_AUTH_TOKEN" in twilio.text
    assert "wrong-token" not in render(findings)


async def test_doctor_names_missing_migrations_and_a_dead_ingester(
        db_url: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    await db.execute("DELETE FROM schema_migrations WHERE version = "
                     "(SELECT max(version) FROM schema_migrations)")
    settings = Settings(database_url=db_url, public_url=f"http://127.0.0.1:{free_port()}",
                        data_dir=tmp_path)
    findings = await diagnose(settings)
    checks = by_check(findings)
    assert checks["migrations"].level == "fail"
    assert "smsledger migrate" in checks["migrations"].text
    assert checks["ingester"].level == "fail"
    assert checks["twilio"].level == "fail" and "TWILIO_ACCOUNT_SID" in checks["twilio"].text


def dataclass_replace(settings: Settings, **changes: Any) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


async def test_simulate_duration_ends_within_its_drain(db_url: str, tmp_path: Path) -> None:
    """``simulate --duration 5`` stops sending at 5 s, waits at most --drain for the callbacks
    still on their way, says how many it waited for and dropped, and exits within 20 s."""
    import asyncio
    import os
    import subprocess
    import sys

    twilio_port, ingest_port = free_port(), free_port()
    ingest_url = f"http://127.0.0.1:{ingest_port}"
    api_key = "sim-test-key-" + "a" * 20
    async with TestServer(create_app(Settings(
            database_url=db_url, twilio_account_sid=ACCOUNT,
            twilio_auth_token=Secret(TEST_TOKEN), twilio_phone_number=NUMBER,
            twilio_api_url=f"http://127.0.0.1:{twilio_port}", api_key=Secret(api_key),
            public_url=ingest_url, data_dir=tmp_path)), port=ingest_port):
        env = dict(os.environ, TWILIO_ACCOUNT_SID=ACCOUNT, TWILIO_AUTH_TOKEN=TEST_TOKEN,
                   TWILIO_PHONE_NUMBER=NUMBER, SMSLEDGER_API_KEY=api_key,
                   SMSLEDGER_PUBLIC_URL=ingest_url, DATABASE_URL=db_url)
        argv = [sys.executable, "-m", "smsledger.cli", "simulate", "--ingest-url", ingest_url,
                "--twilio-port", str(twilio_port),
                "--duration", "5", "--drain", "5", "--rate", "10", "--numbers", "50"]
        # The ingester runs in this event loop: run the simulator beside it, not blocking it.
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=Path(__file__).parent.parent,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "sent:" in text, text
    assert "callbacks delivered: 0," not in text, text
    assert "waited up to 5 s for" in text and "dropped" in text, text


def test_doctor_wants_a_sign_in_for_a_dashboard_beyond_this_machine(tmp_path: Path) -> None:
    from smsledger.doctor import check_dashboard

    local = Settings(data_dir=tmp_path)
    assert check_dashboard(local).level == "ok" and "127.0.0.1" in check_dashboard(local).text
    exposed = Settings(data_dir=tmp_path, dashboard_url="https://ops.example.com")
    finding = check_dashboard(exposed)
    assert finding.level == "fail" and "SMSLEDGER_DASHBOARD_PASSWORD" in finding.text
    guarded = Settings(data_dir=tmp_path, dashboard_url="https://ops.example.com",
                       dashboard_password=Secret("correct horse battery"))
    assert check_dashboard(guarded).level == "ok"
    clear = Settings(data_dir=tmp_path, dashboard_url="http://ops.example.com",
                     dashboard_password=Secret("correct horse battery"))
    assert check_dashboard(clear).level == "warn"
    half = Settings(data_dir=tmp_path, oidc_client_id="smsledger")
    assert check_dashboard(half).level == "fail"
