"""Words a person reads instead of the model's identifiers (``opted_out``, ``message.status``,
``sender_content``), and the one way every page formats percentages, durations and countries."""

from __future__ import annotations

import math
from typing import Any

import phonenumbers
from phonenumbers import geocoder

EVENT_TYPES = {
    "message.sent": "Sent to Twilio",
    "message.status": "Status from Twilio",
    "message.send_failed": "Refused by Twilio",
    "message.refused": "Refused by smsledger",
    "message.inbound": "Reply received",
    "message.priced": "Final price from Twilio",
    "contact.opted_out": "Opted out",
    "contact.opted_in": "Opted back in",
    "contact.help_requested": "Asked for help",
    "contact.suppressed": "Suppressed (list hygiene)",
    "contact.unsuppressed": "Unsuppressed",
    "number.looked_up": "Carrier looked up",
    "verification.started": "Verify code sent",
    "verification.checked": "Verify code checked",
    "otp.confirmed": "OTP confirmed by the user",
    "alert.opened": "Alert opened",
    "alert.resolved": "Alert resolved",
    "alert.notified": "Alert notification sent",
}

SOURCES = {
    "api": "smsledger API", "webhook": "Twilio webhook", "event-stream": "Event Streams",
    "reconcile": "Reconcile (Messages API)", "backfill": "Backfill", "worker": "Worker",
}

VERDICTS = {
    "ok": "OK", "remove": "Remove", "unreachable": "Unreachable", "blocked": "Blocked",
    "opted_out": "Opted out",
}

ERROR_CLASSES = {
    "permanent": "Number: permanent (stop texting it)",
    "temporary": "Temporary (retry later)", "opt_out": "Recipient opted out",
    "blocked": "Blocked by recipient or carrier",
    "sender_content": "Yours: content filtered", "sender_capacity": "Yours: capacity",
    "sender_configuration": "Yours: account setup", "sender_registration": "Yours: registration",
    "fraud_signal": "Fraud protection", "permanent_mms": "MMS not supported",
}

REFUSALS = {
    "opted_out": "Opted out (STOP)", "suppressed": "Suppressed by list hygiene",
    "fraud_guard": "Fraud guard (SMS pumping alert open)", "21610": "21610 recipient opted out",
    "21211": "21211 invalid number", "21614": "21614 not a mobile number",
}

CONTACT_KINDS = {
    "opted_out": "Opted out", "opted_in": "Opted back in", "help_requested": "Asked for help",
}


def label(table: dict[str, str], value: Any) -> str:
    """``table[value]``, else the identifier made readable; empty for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value)
    return table.get(text) or text.replace("_", " ").replace(".", " ").capitalize()


def percent(value: Any) -> str:
    """One percentage format everywhere: 97.3%; a dash when there is nothing to divide."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.1%}"


def duration(seconds: Any) -> str:
    """One duration format everywhere: 850 ms, 4.2 s, 3 min 05 s."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {int(s % 60):02d} s"


def country(code: Any) -> str:
    """``GB`` → ``United Kingdom (GB)``; unknown codes as they are."""
    if code is None or (isinstance(code, float) and math.isnan(code)):
        return ""
    text = str(code)
    try:
        number = phonenumbers.example_number(text)
    except Exception:  # noqa: BLE001 (phonenumbers raises its own types on odd input)
        number = None
    name = geocoder.country_name_for_number(number, "en") if number is not None else ""
    return f"{name} ({text})" if name else text


def wilson(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a rate: where ``successes`` out of ``n`` puts it."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
