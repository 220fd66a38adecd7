"""`smsledger rollup --rebuild`: the shell around ``analytics.rebuild``."""

from __future__ import annotations

import asyncio
import sys

import click

from analytics.rebuild import RebuildBusy, rebuild
from analytics.worker import WorkerConfig


class RebuildFailed(click.ClickException):
    exit_code = 2


def run_rebuild(config: WorkerConfig) -> None:
    try:
        result = asyncio.run(rebuild(config.database_url, config.data_dir, config.rules,
                                     batch_size=config.batch_size, out=sys.stderr))
    except RebuildBusy as exc:
        raise RebuildFailed(str(exc)) from None
    click.echo(f"rollup: rebuilt the model from {result.events} events in {result.batches} "
               f"batches ({result.seconds:.1f} s); readers now use it")
