"""Settings are read once, typed, fail loudly by name, and never show a secret."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from schema.settings import SETTINGS, Secret, Settings, SettingsError
from smsledger.cli import build_parser, main
from tests.conftest import TEST_TOKEN, post_signed, status_form

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_and_types() -> None:
    s = Settings.from_env({})
    assert s.public_url == "http://127.0.0.1:8080"
    assert s.data_dir == Path(".smsledger")
    assert s.max_body_bytes == 65536
    s = Settings.from_env({"SMSLEDGER_MAX_BODY_BYTES": "1024",
                           "SMSLEDGER_PUBLIC_URL": "https://sms.example.com/"})
    assert s.max_body_bytes == 1024
    assert s.public_url == "https://sms.example.com"


@pytest.mark.parametrize(("env", "message"), [
    ({"SMSLEDGER_MAX_BODY_BYTES": "lots"}, "SMSLEDGER_MAX_BODY_BYTES must be a whole number"),
    ({"SMSLEDGER_QUEUE_SIZE": "0"}, "SMSLEDGER_QUEUE_SIZE must be greater than 0"),
    ({"SMSLEDGER_PUBLIC_URL": "sms.example.com"}, "SMSLEDGER_PUBLIC_URL must be an http"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must be a postgresql"),
    ({"SMSLEDGER_LOG_LEVEL": "loud"}, "SMSLEDGER_LOG_LEVEL must be one of"),
])
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_require_names_missing_variables() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL, TWILIO_AUTH_TOKEN"):
        Settings.from_env({}).require("database_url", "twilio_auth_token")


def test_secrets_never_show_in_repr() -> None:
    s = Settings.from_env({"TWILIO_AUTH_TOKEN": "sekrit-token-value",
                           "DATABASE_URL": "postgresql://u:dbpassword@h/db"})
    assert "sekrit-token-value" not in repr(s) and "sekrit-token-value" not in str(s)
    assert "dbpassword" not in repr(s)
    assert s.twilio_auth_token.reveal() == "sekrit-token-value"
    assert repr(Secret("x")) == "Secret('**********')"


def test_help_lists_every_setting_with_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["serve", "--help"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        out = capsys.readouterr().out
        for setting in SETTINGS:
            assert setting.env in out


def test_readme_documents_every_setting_and_command() -> None:
    readme = (ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in readme, setting.env
    assert "scripts/demo" in readme and "scripts/test" in readme
    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    for name in commands:
        assert f"`smsledger {name}" in readme, name
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci


def test_cli_migrate_is_idempotent(db_url: str, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_cli_errors_are_clear_not_tracebacks() -> None:
    env = {"PATH": "/usr/bin:/bin", "SMSLEDGER_QUEUE_SIZE": "-3"}
    result = subprocess.run([sys.executable, "-m", "smsledger.cli", "migrate"], env=env,
                            capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 2
    assert "SMSLEDGER_QUEUE_SIZE must be greater than 0" in result.stderr
    assert "Traceback" not in result.stderr


async def test_auth_token_never_logged(ingest: TestClient[object, object],
                                       db: asyncpg.Connection,
                                       caplog: pytest.LogCaptureFixture,
                                       settings: Settings) -> None:
    caplog.set_level(logging.DEBUG)
    form = status_form("SM" + "9" * 32, "delivered")
    await post_signed(ingest, "/twilio/status", form)
    await post_signed(ingest, "/twilio/status", form, token="wrong")
    await post_signed(ingest, "/twilio/status", {"MessageSid": "SM1"})
    logging.getLogger("test").info("settings at start: %r", settings)
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert "refused POST /twilio/status: signature_invalid" in caplog.text
    assert TEST_TOKEN not in text
