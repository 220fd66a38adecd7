"""``smsledger``: the one command surface (serve, migrate, db, demo, ...), on click.

To add a command, put its logic in a module of its own and wire it here in a few lines::

    @cli.command()
    @reads("database_url", "data_dir")   # the settings it reads: options, --help, Settings
    @click.option("--limit", type=int, default=10, show_default=True, help="...")
    def mything(settings: Settings, limit: int) -> None:
        \"\"\"One line for `smsledger --help`; more for `smsledger mything --help`.\"\"\"
        from mypackage.mything import run   # imported here: `smsledger --help` stays fast

        run(settings, limit)

``@reads`` gives the command an option per (non-secret) setting, bound to its environment
variable (``envvar=``, shown in ``--help``), lists the secrets it reads in its help, and passes
``settings``: every setting read once from the environment, with the command's flags over it.
Bad input: raise ``click.UsageError`` / ``click.BadParameter``; work that could not be done:
raise ``Failed``. Both exit 2 with one clear line, as do SettingsError and the other known
errors below (``KNOWN_ERRORS``).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from analytics.hygiene import RulesError
from analytics.report import ReportRefused
from schema import roles
from schema.migrate import MigrationError, migrate_url
from schema.private_files import private_umask, secure_data_dir
from schema.settings import SETTINGS, Setting, Settings, SettingsError, redact_url, settings_table
from smsledger import devdb
from smsledger.logs import setup_logging

log = logging.getLogger("smsledger")

F = TypeVar("F", bound=Callable[..., Any])

# Errors that mean "this could not be done, and here is why": one line on stderr, exit 2.
KNOWN_ERRORS: tuple[type[Exception], ...] = (SettingsError, MigrationError,
                                             devdb.DatabaseNotFound, RulesError,
                                             ReportRefused, roles.RoleMissing)
_BY_FIELD = {s.field: s for s in SETTINGS}
# Who may see the dashboard (smsledger/dashboard_cmd.py, dashboard/auth.py).
DASHBOARD_ACCESS = ("dashboard_password", "oidc_metadata_url", "oidc_client_id",
                    "oidc_client_secret", "dashboard_users", "dashboard_url", "dashboard_hosts")


class Failed(click.ClickException):
    """The command could not do its work (Twilio refused, no snapshot, ...): exit 2, like a
    usage error, so scripts need one test for "did not happen"."""

    exit_code = 2


class _SettingOption(click.Option):
    """An option that sets a setting (``reads``): listed under Settings in ``--help``."""


class _Command(click.Command):
    """A command whose help lists its own options, then the settings it reads, then the secrets
    it reads (they have no flag: a secret on a command line shows in `ps` and the shell's
    history)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[bool, list[tuple[str, str]]] = {False: [], True: []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections[isinstance(param, _SettingOption)].append(record)
        for title, is_setting in (("Options", False),
                                  ("Settings (the flag, else the environment variable)", True)):
            if sections[is_setting]:
                with formatter.section(title):
                    formatter.write_dl(sections[is_setting])

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        secrets: Sequence[Setting] = getattr(self.callback, "secret_settings", ())
        if secrets:
            with formatter.section("Secrets (from the environment only)"):
                formatter.write_dl([(s.env, s.help) for s in secrets])
        super().format_epilog(ctx, formatter)


class _Group(click.Group):
    command_class = _Command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KNOWN_ERRORS as exc:
            raise Failed(str(exc)) from None


_Group.group_class = _Group


def reads(*fields: str, flags: dict[str, str] | None = None) -> Callable[[F], F]:
    """Declare the settings a command reads (by ``Settings`` field; ``log_level`` always).

    Each non-secret one becomes an option (``--field-name``, plus ``flags[field]`` as an older
    alias) bound to its environment variable; the command gets ``settings`` instead of them. A
    value from the environment or the default is read by ``Settings.from_env``, which checks
    every setting at start; a flag given on the command line is parsed by the same table entry
    and wins.
    """
    wanted = [_BY_FIELD[f] for f in dict.fromkeys((*fields, "log_level"))]
    options = [s for s in wanted if not s.secret]

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(**kwargs: Any) -> Any:
            ctx = click.get_current_context()
            overrides = {}
            for s in options:
                raw = kwargs.pop(s.field)
                if ctx.get_parameter_source(s.field) is ParameterSource.COMMANDLINE:
                    try:
                        overrides[s.field] = s.value(raw)
                    except SettingsError as exc:
                        raise click.BadParameter(str(exc), ctx=ctx,
                                                 param_hint=_flag_names(s, flags)) from None
            try:
                settings = Settings.from_env(**overrides)
            except SettingsError as exc:
                raise click.UsageError(str(exc), ctx=ctx) from None
            setup_logging(settings)
            tightened = secure_data_dir(settings.data_dir)
            if tightened:
                log.warning("made %d files and directories under %s private (0600/0700)",
                            tightened, settings.data_dir)
            return fn(settings, **kwargs)

        params = run.__dict__.setdefault("__click_params__", [])
        for s in options:
            # click lists __click_params__ in reverse: in front, they come after the command's
            # own options, in the order given.
            params.insert(0, _SettingOption(
                [*_flag_names(s, flags), s.field], envvar=s.env, show_envvar=True,
                default=s.default, show_default=bool(s.default), metavar=s.metavar,
                help=s.help))
        run.secret_settings = [s for s in wanted if s.secret]  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return decorate


def _flag_names(s: Setting, flags: dict[str, str] | None) -> list[str]:
    names = ["--" + s.field.replace("_", "-")]
    alias = (flags or {}).get(s.field)
    return names + [alias] if alias else names


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100},
             epilog="Each command's --help lists the settings it reads, with their environment "
                    "variables; `smsledger settings` prints them all.")
def cli() -> None:
    """Event-sourced delivery monitoring and analytics for Twilio SMS."""


@cli.command()
def settings() -> None:
    """Print every setting: environment variable, default and meaning."""
    click.echo(settings_table())


@cli.command()
@reads("database_url", "twilio_account_sid", "twilio_auth_token", "twilio_auth_token_secondary",
       "webhook_shared_keys", "twilio_phone_number", "twilio_verify_service_sid",
       "twilio_api_url", "api_key", "public_url", "trust_forwarded", "data_dir",
       "max_body_bytes", "max_form_fields", "queue_size", "batch_max", "db_pool_size",
       "db_timeout_s", "help_reply", "opt_out_reply", "opt_in_reply", "opt_out_scope",
       "fraud_guard", "twilio_timeout_s", "body_timeout_s", "max_slow_readers")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=int, default=8080, show_default=True, help="port to listen on")
def serve(settings: Settings, host: str, port: int) -> None:
    """Run the ingester (Twilio webhooks in, events out)."""
    from aiohttp import web

    from ingest.app import create_app

    settings.require("database_url")
    app = create_app(settings)

    async def steady_gc(_app: Any) -> None:
        # Everything alive after start-up lives for the whole run: keep the cyclic collector
        # off it, and let it run less often (its pauses showed in the p99 under load).
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)

    app.on_startup.append(steady_gc)
    log.info("ingester listening on http://%s:%d (public URL %s)", host, port,
             settings.public_url)
    web.run_app(app, host=host, port=port, print=None, access_log=None, handle_signals=True,
                shutdown_timeout=10)


@cli.command()
@reads("database_url")
def migrate(settings: Settings) -> None:
    """Apply the PostgreSQL migrations (idempotent; needs DATABASE_URL)."""
    settings.require("database_url")
    applied = asyncio.run(migrate_url(settings.database_url))
    for m in applied:
        click.echo(f"applied {m.version:04d}_{m.name}")
    if not applied:
        click.echo(f"{redact_url(settings.database_url)}: up to date")


@cli.command()
@reads("database_url", "data_dir")
@click.argument("action", type=click.Choice(["url", "env", "stop"]))
@click.option("--database", default="",
              help="create and use this database on a found server (ignored when DATABASE_URL "
                   "is set)")
def db(settings: Settings, action: str, database: str) -> None:
    """Find a PostgreSQL (DATABASE_URL, then 127.0.0.1:5432) or start a private cluster under
    SMSLEDGER_DATA_DIR/pg; `stop` stops that cluster.

    ACTION is url (print the URL), env (print shell exports) or stop (stop the private
    cluster).
    """
    if action == "stop":
        cluster = devdb.PrivateCluster(settings.data_dir / "pg")
        cluster.stop()
        click.echo(f"stopped the private cluster under {cluster.root}" if cluster.root.exists()
                   else "no private cluster")
        return
    environ = {"DATABASE_URL": settings.database_url} if settings.database_url else {}
    found = devdb.find_database(settings.data_dir, environ)
    url = found.url
    if found.how != "environment" and database:
        asyncio.run(devdb.ensure_database(found.url, database))
        url = found.url_for(database)
    if action == "env":
        click.echo(f"export DATABASE_URL={shlex.quote(url)}")
        click.echo(f"export SMSLEDGER_DB_HOW={shlex.quote(found.how)}")
    else:
        click.echo(url)
    click.echo(f"using {found.how}: {redact_url(url)}", err=True)


def _worker_config(settings: Settings, once: bool, batch_size: int = 250_000,
                   crash_after_batches: int = 0, crash_in_compaction: bool = False) -> Any:
    from analytics.hygiene import load_rules
    from analytics.worker import WorkerConfig
    from smsledger.alerts_cmd import alerts_config

    settings.require("database_url")
    return WorkerConfig(
        database_url=settings.database_url, data_dir=settings.data_dir,
        rules=load_rules(settings.hygiene_rules), interval_s=settings.rollup_interval_s,
        batch_size=batch_size, hygiene_every_s=settings.hygiene_every_s,
        lookup_limit=settings.lookup_limit, notify_url=settings.notify_url, once=once,
        reconcile_every_s=settings.reconcile_every_s,
        reconcile_after_s=settings.reconcile_after_s,
        price_fill_every_s=settings.price_fill_every_s,
        price_fill_after_s=settings.price_fill_after_s,
        price_fill_limit=settings.price_fill_limit,
        compact_every_s=settings.compact_every_s, lake_keep_s=settings.lake_keep_s,
        crash_after_batches=crash_after_batches, crash_in_compaction=crash_in_compaction,
        alerts=alerts_config(settings))


_batch_size = click.option("--batch-size", type=click.IntRange(min=1), default=250_000,
                           show_default=True,
                           help="events per DuckDB transaction (250000 measured best)")


@cli.command()
@reads("database_url", "data_dir", "rollup_interval_s", "hygiene_rules",
       flags={"rollup_interval_s": "--interval"})
@click.option("--once", is_flag=True, help="apply what is there now, then exit")
@_batch_size
@click.option("--rebuild", is_flag=True,
              help="recompute the whole model from the event log into a new lake and switch "
                   "readers to it when complete (progress on stderr)")
@click.option("--compact", is_flag=True,
              help="compact the lake after the rollup (the worker does it every "
                   "SMSLEDGER_COMPACT_EVERY_S)")
@click.option("--crash-after-batches", type=int, default=0, hidden=True)
@click.option("--crash-in-compaction", is_flag=True, hidden=True)
def rollup(settings: Settings, once: bool, batch_size: int, rebuild: bool, compact: bool,
           crash_after_batches: int, crash_in_compaction: bool) -> None:
    """Apply new events to the model (a DuckLake: catalog in PostgreSQL, files under
    SMSLEDGER_DATA_DIR/lake; readers see each commit); every SMSLEDGER_ROLLUP_INTERVAL_S, or
    once with --once."""
    from analytics.worker import run_worker

    config = _worker_config(settings, once, batch_size, crash_after_batches,
                            crash_in_compaction)
    if rebuild:
        from smsledger.rebuild_cmd import run_rebuild
        run_rebuild(config)
        return
    config.hygiene_every_s, config.lookup_limit, config.alerts = 0, 0, None
    config.compact_now = compact
    result = asyncio.run(run_worker(config))
    click.echo(f"rollup: applied {result.events} events in {result.batches} batches; model "
               f"{settings.data_dir / 'lake'}")


@cli.command()
@reads("database_url", "data_dir", "rollup_interval_s", "hygiene_every_s", "lookup_limit",
       "hygiene_rules", "notify_url", "reconcile_every_s", "reconcile_after_s",
       "price_fill_every_s", "price_fill_after_s", "price_fill_limit",
       "compact_every_s", "lake_keep_s",
       "twilio_account_sid", "twilio_auth_token", "twilio_api_url", "twilio_timeout_s",
       "alert_rules", "alert_webhook_url", "smtp_url", "ingest_url", "worker_metrics_port",
       flags={"rollup_interval_s": "--interval", "hygiene_every_s": "--hygiene-every"})
@click.option("--once", is_flag=True, help="one round, then exit")
@_batch_size
def worker(settings: Settings, once: bool, batch_size: int) -> None:
    """The analytics worker: rollup every SMSLEDGER_ROLLUP_INTERVAL_S, Lookup enrichment, the
    hygiene report every SMSLEDGER_HYGIENE_EVERY_S. One leader at a time; SIGTERM finishes the
    batch."""
    from analytics.worker import run_worker
    from twilio_api.client import make_client

    config = _worker_config(settings, once, batch_size)

    async def main() -> None:
        client = http = None
        wants = config.lookup_limit or config.reconcile_every_s or config.price_fill_every_s
        if wants and settings.twilio_account_sid and settings.twilio_auth_token:
            client, http = make_client(settings)
        elif config.lookup_limit:
            log.info("Lookup enrichment off: no TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN")
        try:
            await run_worker(config, client)
        finally:
            if http is not None:
                await http.close()

    asyncio.run(main())


@cli.group(invoke_without_command=True)
@reads("database_url")
@click.option("--all", "everything", is_flag=True, help="resolved alerts too")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def alerts(settings: Settings, everything: bool, fmt: str) -> None:
    """List the open alerts (--all: every alert) from the event log. `alerts check` evaluates
    the rules once instead."""
    from smsledger import alerts_cmd

    if click.get_current_context().invoked_subcommand is None:
        settings.require("database_url")
        asyncio.run(alerts_cmd.list_alerts(settings, everything, fmt))


@alerts.command("check")
@reads("database_url", "data_dir", "alert_rules", "alert_webhook_url", "smtp_url")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def alerts_check(settings: Settings, fmt: str) -> None:
    """Evaluate the alert rules once on the published snapshot, append what changed, send the
    pending notifications, print the open alerts; exit 3 when any is open, 0 otherwise (for
    cron)."""
    from analytics.snapshot import SnapshotMissing
    from smsledger import alerts_cmd

    settings.require("database_url")
    try:
        code = asyncio.run(alerts_cmd.check(settings, fmt))
    except SnapshotMissing as exc:
        raise Failed(str(exc)) from None
    if code:
        sys.exit(code)


@cli.group()
def report() -> None:
    """Write a report from the published snapshot (`smsledger report hygiene`)."""


@report.command("hygiene")
@reads("database_url", "data_dir", "hygiene_rules", "notify_url")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="directory for the files [default: SMSLEDGER_DATA_DIR/reports]")
def report_hygiene(settings: Settings, out: Path | None) -> None:
    """CSV and HTML of the numbers to stop texting, from the published snapshot, and
    contact.suppressed events for new removals."""
    from analytics.hygiene import load_rules
    from analytics.report import hygiene_report
    from analytics.snapshot import SnapshotMissing, open_snapshot

    settings.require("database_url")
    rules = load_rules(settings.hygiene_rules)
    try:
        con = open_snapshot(settings.data_dir)
    except SnapshotMissing as exc:
        raise Failed(str(exc)) from None

    async def main() -> Any:
        pg = await roles.connect_as(settings.database_url, roles.WORKER_ROLE)
        try:
            return await hygiene_report(con, pg, rules, out or settings.data_dir / "reports",
                                        settings.notify_url)
        finally:
            await pg.close()

    try:
        result = asyncio.run(main())
    finally:
        con.close()
    click.echo(f"hygiene report ({result.rules_version}): {len(result.rows)} numbers flagged "
               f"{result.counts}; {result.suppressed_now} newly suppressed")
    click.echo(f"  {result.csv_path}\n  {result.html_path}")


def _with_twilio(settings: Settings, job: Callable[[Any, Any], Any], resume: str = "") -> Any:
    """Run ``job(twilio_client, pg_connection)`` with both opened and closed around it; Twilio's
    refusals and outages become ``Failed`` (``resume`` is added to their message)."""
    from twilio.base.exceptions import TwilioException

    from twilio_api.client import UNREACHABLE, make_client

    settings.require("database_url", "twilio_account_sid", "twilio_auth_token")

    async def main() -> Any:
        client, http = make_client(settings)
        pg = await roles.connect_as(settings.database_url, roles.WORKER_ROLE)
        try:
            return await job(client, pg)
        finally:
            await pg.close()
            await http.close()

    try:
        return asyncio.run(main())
    except TwilioException as exc:
        raise Failed(twilio_refused(exc) + resume) from None
    except UNREACHABLE as exc:
        raise Failed(f"Twilio could not be reached ({type(exc).__name__})"
                     + (resume or "; nothing was stored")) from None


def twilio_refused(exc: Any) -> str:
    """Twilio answered, and said no (wrong credentials, unknown account, rate limit). A
    resource call raises TwilioRestException (status, code); a page fetch raises the base
    TwilioException with the response as its second argument."""
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(exc, "status", None) or getattr(response, "status_code", "?")
    code = getattr(exc, "code", None)
    hint = " (check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)" if status in (401, 403) else ""
    return f"Twilio refused the request: HTTP {status}" + (f", code {code}" if code else "") + hint


_TWILIO = ("database_url", "twilio_account_sid", "twilio_auth_token", "twilio_api_url",
           "twilio_timeout_s")


@cli.command()
@reads(*_TWILIO, "reconcile_after_s")
@click.option("--after-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="minutes after sending [default: SMSLEDGER_RECONCILE_AFTER_S]")
@click.option("--max-age-hours", type=click.FloatRange(min=0, min_open=True), default=72,
              show_default=True, help="look no further back than this")
@click.option("--limit", type=click.IntRange(min=1), default=500, show_default=True,
              help="messages per run")
def reconcile(settings: Settings, after_minutes: float | None, max_age_hours: float,
              limit: int) -> None:
    """Fetch, through Twilio's Messages API, every message with no terminal status some time
    after sending, and recent messages smsledger never heard of (create-time failures, sends
    made elsewhere)."""
    from analytics.reconcile import reconcile as run_reconcile

    after = (timedelta(seconds=settings.reconcile_after_s) if after_minutes is None
             else timedelta(minutes=after_minutes))
    result = _with_twilio(settings, lambda client, pg: run_reconcile(
        client, pg, after=after, max_age=timedelta(hours=max_age_hours), limit=limit))
    click.echo(f"reconcile: {result.checked} unsettled messages checked, {result.statuses} "
               f"statuses and {result.unknown_found} unknown messages found, {result.events} "
               "new events")


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    from datetime import UTC

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not a date: {value!r} (use YYYY-MM-DD or an ISO time)",
                                 ctx, param) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@report.command("cost")
@reads("data_dir", "prices")
@click.option("--since", metavar="DATE", callback=_date,
              help="first day, by send time (YYYY-MM-DD)")
@click.option("--until", metavar="DATE", callback=_date, help="end, exclusive (YYYY-MM-DD)")
@click.option("--by", type=click.Choice(["day", "sender", "category", "country", "carrier"]),
              default="day", show_default=True, help="one row per")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
def report_cost(settings: Settings, since: datetime | None, until: datetime | None, by: str,
                fmt: str) -> None:
    """Spend from the published snapshot: Twilio's final prices apart from estimates (the
    price table), failed-message fees, wasted spend, unit costs and the monthly saving of the
    current hygiene report."""
    from smsledger.cost_report import cost_report

    try:
        click.echo(cost_report(settings.data_dir, settings.prices, by=by, fmt=fmt,
                               since=since, until=until), nl=False)
    except SettingsError as exc:
        raise Failed(str(exc)) from None


@cli.command()
@reads(*_TWILIO, "data_dir")
@click.option("--since", metavar="DATE", callback=_date, help="first day (YYYY-MM-DD)")
@click.option("--until", metavar="DATE", callback=_date, help="end, exclusive (YYYY-MM-DD)")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
def backfill(settings: Settings, since: datetime | None, until: datetime | None,
             files: tuple[Path, ...]) -> None:
    """Import message history: from the Messages API (--since, paged, resumable, idempotent),
    or from Twilio Bulk Export day files (gzip JSON lines) given as FILES."""
    from analytics.reconcile import backfill_api, backfill_files
    from schema.events import InvalidEvent

    if files:
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise click.BadParameter(f"no such file: {', '.join(missing)}", param_hint="FILES")
        settings.require("database_url")

        async def from_files() -> Any:
            pg = await roles.connect_as(settings.database_url, roles.WORKER_ROLE)
            try:
                return await backfill_files(pg, list(files))
            finally:
                await pg.close()

        try:
            result = asyncio.run(from_files())
        except (InvalidEvent, OSError) as exc:
            raise Failed(f"backfill stopped: {exc}") from None
    else:
        if since is None:
            raise click.UsageError("give --since DATE (Messages API) or Bulk Export files")
        stamp = since.strftime("%Y%m%d") + (until.strftime("-%Y%m%d") if until else "")
        checkpoint = settings.data_dir / f"backfill-{stamp}.json"
        result = _with_twilio(settings, lambda client, pg: backfill_api(
            client, pg, since, until, checkpoint),
            resume="; run again to resume from the last stored page")
    click.echo(f"backfill: {result.messages:,} messages, {result.events:,} new events")


@cli.command()
@reads("database_url", "data_dir")
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="output format")
def query(settings: Settings, sql: str, fmt: str) -> None:
    """Read-only SQL on the analytics model (the state the dashboard shows), e.g.
    `smsledger query "SELECT verdict, count(*) FROM numbers GROUP BY 1"`; tables and columns:
    README, Analytics. Writes, ATTACH, COPY, INSTALL/LOAD and file-reading functions are
    refused (exit 2), never executed."""
    from smsledger.query_cmd import run_query

    run_query(sql, fmt, settings)


@cli.command()
@reads("data_dir", "show_numbers", *DASHBOARD_ACCESS)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; another than 127.0.0.1 needs "
                   "SMSLEDGER_DASHBOARD_PASSWORD or an OpenID Connect provider")
@click.option("--port", type=int, default=8501, show_default=True, help="port")
def dashboard(settings: Settings, host: str, port: int) -> None:
    """Run the Streamlit dashboard on the analytics model (read-only; the pointer file
    SMSLEDGER_DATA_DIR/analytics.lake names it), behind a sign-in when one is configured."""
    from smsledger import dashboard_cmd

    argv, said = dashboard_cmd.prepare(settings, host, port)
    click.echo(said, err=True)
    # The dashboard reads its settings from the environment: flags given here go along
    # (secrets have no flags: they are in the environment already).
    os.environ.update(_settings_env(settings, "data_dir", "show_numbers", "log_level",
                                    *(f for f in DASHBOARD_ACCESS if not _BY_FIELD[f].secret)))
    # exec, not a child: a SIGTERM for this process reaches Streamlit itself.
    os.execv(sys.executable, argv)


def _settings_env(settings: Settings, *fields: str) -> dict[str, str]:
    """The environment that gives a child process these settings as this one has them."""
    env = {}
    for field in fields:
        value = getattr(settings, field)
        if isinstance(value, tuple):
            value = ",".join(value)
        env[_BY_FIELD[field].env] = ("1" if value else "0") if isinstance(value, bool) else str(
            value)
    return env


def _incidents(specs: tuple[str, ...]) -> tuple[Any, ...]:
    from sim.incidents import IncidentError, parse

    try:
        return tuple(parse(spec) for spec in specs)
    except IncidentError as exc:
        raise click.BadParameter(str(exc), param_hint="--incident") from None


@cli.command()
@reads("twilio_account_sid", "twilio_auth_token", "api_key", "public_url",
       "twilio_phone_number", "twilio_verify_service_sid")
@click.option("--ingest-url", default="http://127.0.0.1:8080", show_default=True,
              help="where the ingester listens")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="actions per second")
@click.option("--duration", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="seconds of traffic; 0 runs until Ctrl-C")
@click.option("--seed", type=int, default=1, show_default=True,
              help="random seed: same seed, same world")
@click.option("--twilio-port", type=int, default=8090, show_default=True,
              help="port of the simulated Twilio API")
@click.option("--numbers", type=click.IntRange(min=1), default=300, show_default=True,
              help="phone numbers in the world")
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="multiply every simulated delay (0.1: ten times faster)")
@click.option("--history-days", type=click.IntRange(min=0), default=0, show_default=True,
              help="days of past Message resources for `smsledger backfill`")
@click.option("--drain", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="after --duration, seconds to wait for callbacks still on their way; what "
                   "is left then is dropped and counted")
@click.option("--incident", multiple=True, metavar="KIND[:TARGET]@SECONDS[+DURATION]",
              callback=lambda _c, _p, specs: _incidents(specs),
              help="stage an incident (repeatable): pumping:PREFIX@S drives OTP sends to "
                   "consecutive numbers in PREFIX that never convert, from S seconds on; "
                   "carrier-outage:CARRIER@S (30008 for a carrier whose name contains "
                   "CARRIER), callback-silence@S (no status callbacks), latency:COUNTRY@S "
                   "(deliveries 12 s slower); +DURATION ends it")
def simulate(settings: Settings, **options: Any) -> None:
    """Run the local Twilio simulator and drive realistic traffic through the ingester.

    Point the ingester at it with SMSLEDGER_TWILIO_API_URL=http://127.0.0.1:PORT; both share
    TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and SMSLEDGER_API_KEY. Signatures are computed for
    SMSLEDGER_PUBLIC_URL when set, else for --ingest-url.
    """
    from smsledger.simulate import SimulateOptions, run_simulation

    settings.require("twilio_account_sid", "twilio_auth_token", "api_key")
    code = asyncio.run(run_simulation(SimulateOptions(**options), settings))
    if code:
        raise click.exceptions.Exit(code)


@cli.command()
@reads("database_url", "data_dir", "twilio_phone_number")
@click.option("--port", type=int, default=8080, show_default=True,
              help="ingester port; the simulated Twilio uses PORT+10, the dashboard PORT+20")
@click.option("--duration", type=click.FloatRange(min=0), default=0, show_default=True,
              help="stop after this many seconds (0: run until Ctrl-C)")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="simulated actions (sends, replies, OTPs) per second")
@click.option("--seed", type=int, default=1, show_default=True, help="simulator seed")
@click.option("--incident", default="carrier-outage:at&t@180+300", show_default=True,
              callback=lambda _c, _p, value: (_incidents((value,)), value)[1]
              if value else value,
              help="the incident the simulator plays (see `smsledger simulate --help`); "
                   "empty: none")
def demo(settings: Settings, port: int, duration: float, rate: float, seed: int,
         incident: str) -> None:
    """Start everything on this machine: database, migrations, ingester, the Twilio simulator
    with traffic, the analytics worker and the dashboard. Ctrl-C stops it all."""
    from smsledger.demo import run_demo

    code = run_demo(settings, port=port, duration=duration, rate=rate, seed=seed,
                    incident=incident)
    if code:
        raise click.exceptions.Exit(code)


@cli.command()
@reads("database_url", "public_url", "twilio_account_sid", "twilio_auth_token",
       "twilio_phone_number", "twilio_messaging_service_sid", "twilio_verify_service_sid",
       "twilio_api_url", "twilio_timeout_s")
def doctor(settings: Settings) -> None:
    """Check a deployment and say what to fix: settings, PostgreSQL and migrations, the public
    URL, the Twilio credentials, the sender's and Messaging Service's webhook URLs, the Verify
    service. Exit 1 when anything is wrong."""
    from smsledger.doctor import run_doctor

    code = run_doctor(settings)
    if code:
        raise click.exceptions.Exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return its exit status (0, 2 for an error it explains, 130 on Ctrl-C)."""
    # First of all: whatever this process (and its children: PostgreSQL, Streamlit, DuckDB)
    # creates holds personal data, and is for this user only.
    private_umask()
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="smsledger",
                 standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
