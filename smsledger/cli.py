"""``smsledger``: the one command surface (serve, migrate, db, demo, ...).

Every subcommand reads the settings once (``Settings.from_env``), lets its flags override them,
and passes them down explicitly. ``--help`` lists each setting with its environment variable.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from analytics.hygiene import RulesError
from schema.migrate import MigrationError, migrate_url
from schema.settings import Settings, SettingsError, redact_url, settings_help
from smsledger import devdb
from smsledger.logs import setup_logging

log = logging.getLogger("smsledger")

Command = Callable[[argparse.Namespace, Settings], int]


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from ingest.app import create_app

    if not settings.database_url:
        raise SettingsError("DATABASE_URL is not set (the demo finds or starts a database for "
                            "you: see the README)")
    app = create_app(settings)

    async def steady_gc(_app: Any) -> None:
        # Everything alive after start-up lives for the whole run: keep the cyclic collector
        # off it, and let it run less often (its pauses showed in the p99 under load).
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)

    app.on_startup.append(steady_gc)
    log.info("ingester listening on http://%s:%d (public URL %s)", args.host, args.port,
             settings.public_url)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None,
                handle_signals=True, shutdown_timeout=10)
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    settings.require("database_url")
    applied = asyncio.run(migrate_url(settings.database_url))
    for m in applied:
        print(f"applied {m.version:04d}_{m.name}")
    if not applied:
        print(f"{redact_url(settings.database_url)}: up to date")
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "stop":
        cluster = devdb.PrivateCluster(settings.data_dir / "pg")
        cluster.stop()
        print(f"stopped the private cluster under {cluster.root}" if cluster.root.exists()
              else "no private cluster")
        return 0
    environ = {"DATABASE_URL": settings.database_url} if settings.database_url else {}
    db = devdb.find_database(settings.data_dir, environ)
    url = db.url
    if db.how != "environment" and args.database:
        asyncio.run(devdb.ensure_database(db.url, args.database))
        url = db.url_for(args.database)
    if args.action == "env":
        print(f"export DATABASE_URL={shlex.quote(url)}")
        print(f"export SMSLEDGER_DB_HOW={shlex.quote(db.how)}")
    else:
        print(url)
    print(f"using {db.how}: {redact_url(url)}", file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from smsledger.simulate import run_simulation

    settings.require("twilio_account_sid", "twilio_auth_token", "api_key")
    return int(asyncio.run(run_simulation(args, settings)))


def _worker_config(args: argparse.Namespace, settings: Settings, once: bool) -> Any:
    from analytics.hygiene import load_rules
    from analytics.worker import WorkerConfig

    settings.require("database_url")
    return WorkerConfig(
        database_url=settings.database_url, data_dir=settings.data_dir,
        rules=load_rules(settings.hygiene_rules),
        interval_s=getattr(args, "interval", None) or settings.rollup_interval_s,
        batch_size=args.batch_size,
        hygiene_every_s=(settings.hygiene_every_s if getattr(args, "hygiene_every", None) is None
                         else args.hygiene_every),
        lookup_limit=(settings.lookup_limit if getattr(args, "lookup_limit", None) is None
                      else args.lookup_limit),
        notify_url=getattr(args, "notify_url", "") or settings.notify_url, once=once,
        reconcile_every_s=settings.reconcile_every_s,
        reconcile_after_s=settings.reconcile_after_s,
        compact_every_s=settings.compact_every_s, lake_keep_s=settings.lake_keep_s,
        crash_after_batches=getattr(args, "crash_after_batches", 0),
        crash_in_compaction=getattr(args, "crash_in_compaction", False))


def cmd_rollup(args: argparse.Namespace, settings: Settings) -> int:
    from analytics.worker import run_worker

    if args.rebuild:
        from smsledger.rebuild_cmd import run_rebuild
        return run_rebuild(args, settings, _worker_config(args, settings, once=True))
    config = _worker_config(args, settings, once=args.once)
    config.hygiene_every_s, config.lookup_limit = 0, 0
    config.compact_now = args.compact
    result = asyncio.run(run_worker(config))
    print(f"rollup: applied {result.events} events in {result.batches} batches; model "
          f"{settings.data_dir / 'lake'}")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from analytics.worker import run_worker
    from twilio_api.client import make_client

    config = _worker_config(args, settings, once=args.once)

    async def main() -> None:
        client = http = None
        if config.lookup_limit and settings.twilio_account_sid and settings.twilio_auth_token:
            client, http = make_client(settings)
        elif config.lookup_limit:
            log.info("Lookup enrichment off: no TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN")
        try:
            await run_worker(config, client)
        finally:
            if http is not None:
                await http.close()

    asyncio.run(main())
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from analytics.report import hygiene_report
    from analytics.snapshot import SnapshotMissing, open_snapshot

    config = _worker_config(args, settings, once=True)
    try:
        con = open_snapshot(settings.data_dir)
    except SnapshotMissing as exc:
        raise SettingsError(str(exc)) from None

    async def main() -> Any:
        import asyncpg

        pg = await asyncpg.connect(settings.database_url)
        try:
            return await hygiene_report(con, pg, config.rules,
                                        args.out or settings.data_dir / "reports",
                                        config.notify_url)
        finally:
            await pg.close()

    try:
        report = asyncio.run(main())
    finally:
        con.close()
    print(f"hygiene report ({report.rules_version}): {len(report.rows)} numbers flagged "
          f"{report.counts}; {report.suppressed_now} newly suppressed")
    print(f"  {report.csv_path}\n  {report.html_path}")
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from smsledger.query_cmd import run_query

    return run_query(args.sql, args.format, settings)


def _with_twilio(settings: Settings, job: Callable[[Any, Any], Any]) -> Any:
    """Run ``job(twilio_client, pg_connection)`` with both opened and closed around it."""
    import asyncpg

    from twilio_api.client import make_client

    settings.require("database_url", "twilio_account_sid", "twilio_auth_token")

    async def main() -> Any:
        client, http = make_client(settings)
        pg = await asyncpg.connect(settings.database_url)
        try:
            return await job(client, pg)
        finally:
            await pg.close()
            await http.close()

    return asyncio.run(main())


def twilio_refused(exc: Any) -> str:
    """Twilio answered, and said no (wrong credentials, unknown account, rate limit). A
    resource call raises TwilioRestException (status, code); a page fetch raises the base
    TwilioException with the response as its second argument."""
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(exc, "status", None) or getattr(response, "status_code", "?")
    code = getattr(exc, "code", None)
    hint = " (check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)" if status in (401, 403) else ""
    return f"Twilio refused the request: HTTP {status}" + (f", code {code}" if code else "") + hint


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta

    from twilio.base.exceptions import TwilioException

    from analytics.reconcile import reconcile
    from twilio_api.client import UNREACHABLE

    try:
        result = _with_twilio(settings, lambda client, pg: reconcile(
            client, pg, after=timedelta(minutes=args.after_minutes),
            max_age=timedelta(hours=args.max_age_hours), limit=args.limit))
    except TwilioException as exc:
        raise SettingsError(twilio_refused(exc)) from None
    except UNREACHABLE as exc:
        raise SettingsError(f"Twilio could not be reached ({type(exc).__name__}); nothing "
                            "was stored") from None
    print(f"reconcile: {result.checked} unsettled messages checked, {result.statuses} "
          f"statuses and {result.unknown_found} unknown messages found, {result.events} new "
          "events")
    return 0


def _date(text: str) -> Any:
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD or an ISO "
                                         "time)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    import asyncpg
    from twilio.base.exceptions import TwilioException

    from analytics.reconcile import backfill_api, backfill_files
    from schema.events import InvalidEvent
    from twilio_api.client import UNREACHABLE

    if args.files:
        missing = [str(p) for p in args.files if not p.is_file()]
        if missing:
            raise SettingsError(f"no such file: {', '.join(missing)}")
        settings.require("database_url")

        async def files() -> Any:
            pg = await asyncpg.connect(settings.database_url)
            try:
                return await backfill_files(pg, args.files)
            finally:
                await pg.close()

        try:
            result = asyncio.run(files())
        except (InvalidEvent, OSError) as exc:
            raise SettingsError(f"backfill stopped: {exc}") from None
    else:
        if args.since is None:
            raise SettingsError("give --since DATE (Messages API) or Bulk Export files")
        stamp = args.since.strftime("%Y%m%d") + (args.until.strftime("-%Y%m%d")
                                                 if args.until else "")
        checkpoint = settings.data_dir / f"backfill-{stamp}.json"
        try:
            result = _with_twilio(settings, lambda client, pg: backfill_api(
                client, pg, args.since, args.until, checkpoint))
        except TwilioException as exc:
            raise SettingsError(twilio_refused(exc) + "; run again to resume from the last "
                                "stored page") from None
        except UNREACHABLE as exc:
            raise SettingsError(f"Twilio could not be reached ({type(exc).__name__}); run "
                                "again to resume from the last stored page") from None
    print(f"backfill: {result.messages:,} messages, {result.events:,} new events")
    return 0


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    import dashboard

    app = Path(dashboard.__file__).parent / "app.py"
    argv = [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.port", str(args.port), "--server.address", args.host,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false"]
    # exec, not a child: a SIGTERM for this process reaches Streamlit itself.
    os.execv(sys.executable, argv)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from smsledger.demo import run_demo

    return int(run_demo(args, settings))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsledger",
        description="Event-sourced delivery monitoring and analytics for Twilio SMS.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Command, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=settings_help(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=fn)
        return p

    p = add("serve", cmd_serve, "Run the ingester (Twilio webhooks in, events out).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    p.add_argument("--port", type=int, default=8080, help="port to listen on [8080]")

    add("migrate", cmd_migrate, "Apply the PostgreSQL migrations (idempotent; needs "
        "DATABASE_URL).")

    p = add("db", cmd_db, "Find a PostgreSQL (DATABASE_URL, then 127.0.0.1:5432) or start a "
            "private cluster under SMSLEDGER_DATA_DIR/pg; `stop` stops that cluster.")
    p.add_argument("action", choices=["url", "env", "stop"],
                   help="url: print the URL; env: print shell exports; stop: stop the private "
                        "cluster")
    p.add_argument("--database", default="",
                   help="create and use this database on a found server (ignored when "
                        "DATABASE_URL is set)")

    p = add("rollup", cmd_rollup, "Apply new events to the model (a DuckLake: catalog in "
            "PostgreSQL, files under SMSLEDGER_DATA_DIR/lake; readers see each commit); every "
            "SMSLEDGER_ROLLUP_INTERVAL_S, or once with --once.")
    p.add_argument("--once", action="store_true", help="apply what is there now, then exit")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between rollups [SMSLEDGER_ROLLUP_INTERVAL_S]")
    p.add_argument("--batch-size", type=int, default=250_000,
                   help="events per DuckDB transaction (250000 measured best) [250000]")
    p.add_argument("--crash-after-batches", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--crash-in-compaction", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rebuild", action="store_true",
                   help="recompute the whole model from the event log into a new lake and "
                        "switch readers to it when complete (progress on stderr)")
    p.add_argument("--compact", action="store_true",
                   help="compact the lake after the rollup (the worker does it every "
                        "SMSLEDGER_COMPACT_EVERY_S)")

    p = add("worker", cmd_worker, "The analytics worker: rollup every "
            "SMSLEDGER_ROLLUP_INTERVAL_S, Lookup enrichment, the hygiene report every "
            "SMSLEDGER_HYGIENE_EVERY_S. One leader at a time; SIGTERM finishes the batch.")
    p.add_argument("--once", action="store_true", help="one round, then exit")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between rollups [SMSLEDGER_ROLLUP_INTERVAL_S]")
    p.add_argument("--hygiene-every", type=float, default=None,
                   help="seconds between hygiene reports, 0 never [SMSLEDGER_HYGIENE_EVERY_S]")
    p.add_argument("--lookup-limit", type=int, default=None,
                   help="Lookup v2 requests per run, 0 off [SMSLEDGER_LOOKUP_LIMIT]")
    p.add_argument("--notify-url", default="", help="[SMSLEDGER_NOTIFY_URL]")
    p.add_argument("--batch-size", type=int, default=250_000,
                   help="events per DuckDB transaction (250000 measured best) [250000]")

    p = add("report", cmd_report, "Write a report from the published snapshot. `hygiene`: "
            "CSV and HTML of the numbers to stop texting, and contact.suppressed events for "
            "new removals.")
    p.add_argument("kind", choices=["hygiene"])
    p.add_argument("--out", type=Path, default=None,
                   help="directory for the files [SMSLEDGER_DATA_DIR/reports]")
    p.add_argument("--notify-url", default="", help="POST a JSON summary here "
                   "[SMSLEDGER_NOTIFY_URL]")
    p.add_argument("--batch-size", type=int, default=250_000, help=argparse.SUPPRESS)

    p = add("query", cmd_query, "Read-only SQL on the analytics model (the state the dashboard "
            "shows); tables and columns: README, Analytics. Writes, ATTACH, COPY, INSTALL/LOAD "
            "and file-reading functions are refused (exit 2).")
    p.add_argument("sql", help='one query, e.g. "SELECT verdict, count(*) FROM numbers GROUP '
                               'BY 1"')
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="output format [table]")

    p = add("reconcile", cmd_reconcile, "Fetch, through Twilio's Messages API, every "
            "message with no terminal status N minutes after sending, and recent messages "
            "smsledger never heard of (create-time failures, sends made elsewhere).")
    p.add_argument("--after-minutes", type=float, default=10, help="[10]")
    p.add_argument("--max-age-hours", type=float, default=72, help="[72]")
    p.add_argument("--limit", type=int, default=500, help="messages per run [500]")

    p = add("backfill", cmd_backfill, "Import message history: from the Messages API "
            "(--since, paged, resumable, idempotent), or from Twilio Bulk Export day files "
            "(gzip JSON lines) given as paths.")
    p.add_argument("--since", type=_date, default=None, help="first day (YYYY-MM-DD)")
    p.add_argument("--until", type=_date, default=None, help="end, exclusive (YYYY-MM-DD)")
    p.add_argument("files", nargs="*", type=Path, help="Bulk Export files (.json or .json.gz)")

    p = add("dashboard", cmd_dashboard, "Run the Streamlit dashboard on the model (read-only; "
            "SMSLEDGER_DATA_DIR/analytics.lake names it).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    p.add_argument("--port", type=int, default=8501, help="port [8501]")

    p = add("simulate", cmd_simulate,
            "Run the local Twilio simulator and drive realistic traffic through the ingester "
            "(point the ingester at it with SMSLEDGER_TWILIO_API_URL=http://127.0.0.1:PORT; "
            "both share TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and SMSLEDGER_API_KEY).")
    p.add_argument("--ingest-url", default="http://127.0.0.1:8080",
                   help="where the ingester listens [http://127.0.0.1:8080]")
    p.add_argument("--public-url", default="",
                   help="the URL the ingester checks signatures against "
                        "[SMSLEDGER_PUBLIC_URL, else --ingest-url]")
    p.add_argument("--rate", type=float, default=5.0, help="actions per second [5]")
    p.add_argument("--duration", type=float, default=30.0,
                   help="seconds of traffic; 0 runs until Ctrl-C [30]")
    p.add_argument("--seed", type=int, default=1, help="random seed: same seed, same world [1]")
    p.add_argument("--twilio-port", type=int, default=8090,
                   help="port of the simulated Twilio API [8090]")
    p.add_argument("--numbers", type=int, default=300, help="phone numbers in the world [300]")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply every simulated delay (0.1: ten times faster) [1]")
    p.add_argument("--history-days", type=int, default=0,
                   help="days of past Message resources for `smsledger backfill` [0]")

    p = add("demo", cmd_demo, "Start everything on this machine: database, migrations, "
            "ingester, the Twilio simulator with traffic, the analytics worker and the dashboard. "
            "Ctrl-C stops it all.")
    p.add_argument("--port", type=int, default=8080,
                   help="ingester port; the simulated Twilio uses PORT+10, the dashboard "
                        "PORT+20 [8080]")
    p.add_argument("--duration", type=float, default=0,
                   help="stop after this many seconds (0: run until Ctrl-C) [0]")
    p.add_argument("--rate", type=float, default=5.0,
                   help="simulated actions (sends, replies, OTPs) per second [5]")
    p.add_argument("--seed", type=int, default=1, help="simulator seed [1]")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        setup_logging(settings)
        result: int = args.func(args, settings)
        return result
    except (SettingsError, MigrationError, devdb.DatabaseNotFound, RulesError) as exc:
        print(f"smsledger {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
