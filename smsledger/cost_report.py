"""``smsledger report cost``: spend by day, sender, category, country or carrier, from the
published model, as a table, CSV or JSON. Final prices and estimates are separate columns."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from analytics import cost
from analytics.prices import PricesError, load_prices
from analytics.snapshot import SnapshotMissing, open_snapshot
from schema.settings import SettingsError

MONEY = {"estimated_usd", "final_usd", "total_usd", "failed_fees_usd", "wasted_usd"}


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if hasattr(value, "item"):          # numpy scalars
        return _clean(value.item())
    return value


def render(rows: list[dict[str, Any]], summary: cost.CostSummary, *, by: str, fmt: str,
           since: datetime | None, until: datetime | None) -> str:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=cost.REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    if fmt == "json":
        return json.dumps({"by": by, "since": since.isoformat() if since else None,
                           "until": until.isoformat() if until else None, "rows": rows,
                           "summary": {k: _clean(v) for k, v in summary.as_dict().items()}},
                          indent=2) + "\n"
    head = [by if c == "key" else c for c in cost.REPORT_COLUMNS]
    cells = [[f"{r[c]:.4f}" if c in MONEY else str(r[c]) for c in cost.REPORT_COLUMNS]
             for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(head, widths, strict=True)))]
    lines += ["  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths, strict=True)))
              for row in cells]
    s = summary

    def money(value: float | None) -> str:
        return "—" if value is None else f"{value:.4f} {s.currency}"

    lines += [
        "",
        f"total {money(s.total_usd)}: final (Twilio's price) {money(s.final_usd)} on "
        f"{s.priced} messages, estimated {money(s.estimated_usd)} on "
        f"{s.messages - s.priced} (price table {s.prices_version})",
        f"failed-message fees {money(s.failed_fees_usd)}; wasted {money(s.wasted_usd)} "
        "(not delivered, or to numbers hygiene says to remove)",
        f"per delivered message {money(s.per_delivered_usd)}; per delivered OTP "
        f"{money(s.per_delivered_otp_usd)}",
        f"Verify: {s.verifications_started} started, {s.verifications_approved} approved, "
        f"{money(s.verify_usd)}; per approved verification "
        f"{money(s.per_approved_verification_usd)}",
        f"the current hygiene report would save {money(s.monthly_saving_usd)} a month",
    ]
    return "\n".join(lines) + "\n"


def cost_report(data_dir: Path, prices_path: Path | None, *, by: str, fmt: str,
                since: datetime | None, until: datetime | None) -> str:
    try:
        prices = load_prices(prices_path)
    except PricesError as exc:
        raise SettingsError(str(exc)) from None
    if since is not None and until is not None and until <= since:
        raise SettingsError("--until must be after --since")
    try:
        con = open_snapshot(data_dir)
    except SnapshotMissing as exc:
        raise SettingsError(str(exc)) from None
    try:
        frame = cost.cost_by(con, prices, by, since, until)
        summary = cost.summary(con, prices, since, until)
    finally:
        con.close()
    rows = [{c: _clean(r[c]) for c in cost.REPORT_COLUMNS}
            for r in frame.to_dict(orient="records")]
    return render(rows, summary, by=by, fmt=fmt, since=since, until=until)
