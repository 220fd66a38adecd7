"""The simulated world: phone numbers in several countries, their carriers and line types, and
what happens to a message sent to each (status sequence, error code, latency). All of it follows
from one seed."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence

import phonenumbers
from phonenumbers import PhoneNumberType

# Carriers per country: (name, MCC, MNC, median delivery seconds).
CARRIERS: dict[str, list[tuple[str, str, str, float]]] = {
    "US": [("Verizon Wireless", "311", "480", 2.2), ("T-Mobile USA, Inc.", "310", "260", 2.8),
           ("AT&T Wireless", "310", "410", 3.4)],
    "GB": [("EE", "234", "30", 2.6), ("Vodafone UK", "234", "15", 3.1),
           ("O2 UK", "234", "10", 4.0)],
    "DE": [("Telekom", "262", "01", 2.4), ("Vodafone GmbH", "262", "02", 3.0),
           ("O2 Germany", "262", "03", 5.2)],
    "FR": [("Orange", "208", "01", 2.9), ("SFR", "208", "10", 3.6),
           ("Bouygues Telecom", "208", "20", 4.4)],
    "IN": [("Reliance Jio", "405", "857", 6.5), ("Bharti Airtel", "404", "10", 7.8),
           ("Vodafone Idea", "404", "20", 11.0)],
    "BR": [("Vivo", "724", "06", 5.5), ("Claro BR", "724", "05", 6.8),
           ("TIM Brasil", "724", "04", 8.5)],
}
COUNTRY_WEIGHTS = {"US": 0.45, "GB": 0.15, "DE": 0.1, "FR": 0.1, "IN": 0.1, "BR": 0.1}

# What Twilio charges per outbound segment by destination country (USD), per MMS message where
# MMS is offered, and the failed-message processing fee with the codes exempt from it. The
# simulator's own figures (it knows nothing of smsledger's price table); the demo's estimates
# come close to them and its final prices equal them.
SMS_PRICE = {"US": "0.00790", "CA": "0.00790", "GB": "0.05240", "DE": "0.09940",
             "FR": "0.08900", "IN": "0.08320", "BR": "0.06000"}
MMS_PRICE = {"US": "0.02000", "CA": "0.02000"}
FAILED_FEE = "0.00100"
FEE_EXEMPT = frozenset({12400, 20500, 20504, 30103, 30500, 63010, 63012, 30036, 30002, 30454,
                        63038, 90010, 30450, 21408, 30008})


def price(country: str, segments: int, mms: bool, status: str, code: int | None) -> str:
    """The Message resource's ``price`` once Twilio fills it in: negative (money out), a
    string with five decimals, like Twilio's."""
    from decimal import Decimal

    if status == "failed":
        amount = Decimal(0) if code in FEE_EXEMPT else Decimal(FAILED_FEE)
    elif status == "canceled":
        amount = Decimal(0)
    elif mms and country in MMS_PRICE:
        amount = Decimal(MMS_PRICE[country])
    else:
        amount = Decimal(SMS_PRICE.get(country, "0.15000")) * max(1, segments)
    return f"-{amount:.5f}"


# Profiles: how a number behaves. Weights sum to 1.
PROFILES: dict[str, float] = {
    "good": 0.72, "flaky": 0.07, "dead": 0.03, "landline": 0.04, "blocked": 0.01,
    "filtered": 0.04, "stopper": 0.06, "not_mobile": 0.01, "pumped": 0.02,
}


@dataclasses.dataclass(frozen=True)
class Number:
    e164: str
    country: str
    carrier: str
    mcc: str
    mnc: str
    line_type: str          # Lookup v2 line_type_intelligence.type
    profile: str
    median_s: float


@dataclasses.dataclass(frozen=True)
class Fate:
    """What happens to one message: the callbacks Twilio would send, with their delays."""
    create_error: int | None              # refused at create time (REST 400)
    final_status: str | None              # delivered, undelivered, failed
    error_code: int | None
    sent_after_s: float
    final_after_s: float


def _valid_number(rng: random.Random, region: str, kind: int) -> str:
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    national = str(example.national_number)
    for _ in range(1000):
        width = min(6, len(national) - 3)
        tail = "".join(str(rng.randrange(10)) for _ in range(width))
        candidate = phonenumbers.PhoneNumber(country_code=example.country_code,
                                             national_number=int(national[:-width] + tail))
        if phonenumbers.is_valid_number(candidate) and \
                phonenumbers.number_type(candidate) in (kind,
                                                        PhoneNumberType.FIXED_LINE_OR_MOBILE):
            return phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
    raise RuntimeError(f"no valid {region} number found")


def make_numbers(seed: int, count: int) -> list[Number]:
    rng = random.Random(seed)
    countries = list(COUNTRY_WEIGHTS)
    profiles = list(PROFILES)
    seen: set[str] = set()
    numbers: list[Number] = []
    while len(numbers) < count:
        country = rng.choices(countries, [COUNTRY_WEIGHTS[c] for c in countries])[0]
        profile = rng.choices(profiles, [PROFILES[p] for p in profiles])[0]
        carrier, mcc, mnc, median = rng.choice(CARRIERS[country])
        landline = profile in ("landline", "not_mobile")
        e164 = _valid_number(rng, country,
                             PhoneNumberType.FIXED_LINE if landline else PhoneNumberType.MOBILE)
        if e164 in seen:
            continue
        seen.add(e164)
        numbers.append(Number(e164, country, carrier, mcc, mnc,
                              "landline" if landline else "mobile", profile, median))
    return numbers


def latency(rng: random.Random, median_s: float) -> float:
    """Seconds from sent to delivered: log-normal around the carrier's median, with a slow tail
    (about 1 in 20 messages takes 4-15 times longer)."""
    value = median_s * math.exp(rng.gauss(0, 0.45))
    if rng.random() < 0.05:
        value *= rng.uniform(4, 15)
    return value


def content_kind(body: str) -> str:
    """What a carrier's filter sees in a body: promotions, one-time codes, or other."""
    text = body.lower()
    if any(word in text for word in ("% off", "sale", "offer", "promo", "deal")):
        return "marketing"
    if "code" in text:
        return "otp"
    return "transactional"


def fate(rng: random.Random, number: Number, category: str, opted_out: bool) -> Fate:
    """What Twilio and the carrier do with one message to ``number``."""
    if opted_out:
        return Fate(21610, None, 21610, 0, 0)
    if number.profile == "not_mobile":
        return Fate(21614, None, 21614, 0, 0)
    sent = rng.uniform(0.2, 1.2)
    later = sent + latency(rng, number.median_s)
    profile = number.profile
    if profile == "landline":
        return Fate(None, "failed", 30006, sent, sent + rng.uniform(0.5, 2))
    if profile == "dead":
        return Fate(None, "undelivered", 30005, sent, later)
    if profile == "blocked":
        return Fate(None, "undelivered", 30004, sent, later)
    if profile == "flaky" and rng.random() < 0.75:
        return Fate(None, "undelivered", 30003, sent, later * 2)
    if profile == "filtered" and category == "marketing":
        return Fate(None, "undelivered", 30007, sent, later)
    if profile == "pumped" and category == "otp" and rng.random() < 0.5:
        return Fate(None, "failed", 30453, sent, sent + 0.3)
    if rng.random() < 0.015:
        return Fate(None, "undelivered", rng.choice([30008, 30017, 30500]), sent, later)
    return Fate(None, "delivered", None, sent, later)


def pick(rng: random.Random, numbers: Sequence[Number]) -> Number:
    return numbers[rng.randrange(len(numbers))]
