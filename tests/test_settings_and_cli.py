"""Settings are read once, typed, fail loudly by name, and never show a secret."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import asyncpg
import click
import pytest
from aiohttp.test_utils import TestClient

from schema.settings import SETTINGS, Secret, Settings, SettingsError
from smsledger.cli import cli, main
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


def test_each_default_is_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)
    assert Settings() == Settings.from_env({}) == Settings.from_env()
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(Settings))
    for setting in SETTINGS:
        assert getattr(Settings(), setting.field) == setting.value(setting.default)
    assert dataclasses.replace(Settings(), queue_size=5).queue_size == 5
    with pytest.raises(TypeError, match="no setting"):
        Settings(queue_sise=5)


def help_of(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The command's --help, its lines joined (click wraps them to the terminal)."""
    assert main([*argv, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


def test_settings_command_prints_the_whole_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    for setting in SETTINGS:
        assert setting.env in out and setting.help[:40] in " ".join(out.split())
    assert "SMSLEDGER_MAX_BODY_BYTES [default: 65536]" in out
    assert "smsledger settings" in help_of(capsys=capsys)


def test_help_shows_each_option_with_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    out = help_of("serve", capsys=capsys)
    assert "--queue-size INTEGER" in out and "env var: SMSLEDGER_QUEUE_SIZE" in out
    assert "default: 20000" in out
    # A secret has no flag (it would show in `ps`), only its variable.
    assert "--twilio-auth-token" not in out and "TWILIO_AUTH_TOKEN" in out
    worker = help_of("worker", capsys=capsys)
    assert "--rollup-interval-s, --interval" in worker
    assert "env var: SMSLEDGER_ROLLUP_INTERVAL_S" in worker


def test_each_command_lists_only_the_settings_it_reads(
        capsys: pytest.CaptureFixture[str]) -> None:
    migrate = help_of("migrate", capsys=capsys)
    assert "DATABASE_URL" in migrate and "SMSLEDGER_LOG_LEVEL" in migrate
    others = [s.env for s in SETTINGS if s.env not in ("DATABASE_URL", "SMSLEDGER_LOG_LEVEL")]
    assert [env for env in others if env in migrate] == []
    assert main(["demo", "--help"]) == 0
    demo = capsys.readouterr().out
    assert "SMSLEDGER_QUEUE_SIZE" not in demo and len(demo.splitlines()) < 40
    report = help_of("report", capsys=capsys)
    hygiene = help_of("report", "hygiene", capsys=capsys)
    assert hygiene != report and "--out" in hygiene and "--out" not in report
    assert "SMSLEDGER_NOTIFY_URL" in hygiene and "--batch-size" not in hygiene


def test_every_setting_is_read_by_some_command(capsys: pytest.CaptureFixture[str]) -> None:
    """A setting no command lists would be missing from every --help but `settings`: add it to
    the ``@reads`` of the commands that use it (smsledger/cli.py)."""
    helps = " ".join(help_of(*name.split(), capsys=capsys) for name in commands(cli)
                     if name not in ("settings", "report"))
    assert [s.env for s in SETTINGS if s.env not in helps] == []


def test_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["settings"]) == 0
    assert main(["serve", "--no-such-flag"]) == 2
    assert "No such option '--no-such-flag'" in capsys.readouterr().err
    assert main(["nosuchcommand"]) == 2
    capsys.readouterr()
    # A bad value by flag names the flag; by environment, the variable.
    assert main(["serve", "--queue-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "'--queue-size'" in err and "must be greater than 0" in err
    monkeypatch.setenv("SMSLEDGER_BATCH_MAX", "many")
    assert main(["migrate"]) == 2
    assert "SMSLEDGER_BATCH_MAX must be a whole number" in capsys.readouterr().err
    monkeypatch.delenv("SMSLEDGER_BATCH_MAX")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["migrate"]) == 2
    assert "missing setting(s): DATABASE_URL" in capsys.readouterr().err
    assert main(["backfill", "--since", "yesterday"]) == 2
    assert "not a date" in capsys.readouterr().err


def commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        names.append(prefix + name)
        if isinstance(command, click.Group):
            names += commands(command, prefix + name + " ")
    return names


def test_readme_documents_every_setting_and_command() -> None:
    readme = (ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in readme, setting.env
    assert "scripts/demo" in readme and "scripts/test" in readme
    assert "report hygiene" in commands(cli)
    for name in commands(cli):
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
