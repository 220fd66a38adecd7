"""`smsledger rollup --rebuild`: the shell around ``analytics.rebuild``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from analytics.rebuild import RebuildBusy, rebuild
from analytics.worker import WorkerConfig
from schema.settings import Settings, SettingsError


def run_rebuild(args: argparse.Namespace, settings: Settings, config: WorkerConfig) -> int:
    try:
        result = asyncio.run(rebuild(config.database_url, config.data_dir, config.rules,
                                     batch_size=config.batch_size, out=sys.stderr))
    except RebuildBusy as exc:
        raise SettingsError(str(exc)) from None
    print(f"rollup: rebuilt the model from {result.events} events in {result.batches} "
          f"batches ({result.seconds:.1f} s); readers now use it")
    return 0
