"""What a number says about itself: country, and the carrier and line type phonenumbers knows
(its carrier data is the hint used where Twilio Lookup is off; it knows little of the US).

Fast enough for a backlog of millions: full parsing (``region_code_for_number`` and
``number_type`` match regular expressions per region, ~20 µs each) runs once per calling code
and leading six national digits — the region and the line type are decided by leading digits
(NANP: the area code) — and is cached; the carrier hint is a prefix-table lookup per number.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType, carrier

_TYPES = {PhoneNumberType.MOBILE: "mobile", PhoneNumberType.FIXED_LINE: "landline",
          PhoneNumberType.FIXED_LINE_OR_MOBILE: "mobile", PhoneNumberType.TOLL_FREE: "tollFree",
          PhoneNumberType.PREMIUM_RATE: "premium", PhoneNumberType.SHARED_COST: "sharedCost",
          PhoneNumberType.VOIP: "nonFixedVoip", PhoneNumberType.PERSONAL_NUMBER: "personal",
          PhoneNumberType.PAGER: "pager", PhoneNumberType.UAN: "uan",
          PhoneNumberType.VOICEMAIL: "voicemail"}
PREFIX = 6


def _split(phone: str) -> tuple[int, str] | None:
    """(calling code, national digits) of an E.164 string, without a full parse."""
    digits = phone[1:]
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        return None
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return code, digits[size:]
    return None


@lru_cache(maxsize=200_000)
def _by_prefix(code: int, national: str) -> tuple[str | None, str | None]:
    """Region and line type for a calling code and leading national digits (``national`` is
    a whole number whose leading digits are the prefix)."""
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    return (phonenumbers.region_code_for_number(number),
            _TYPES.get(phonenumbers.number_type(number)))


def describe(phone: str) -> tuple[str | None, str | None, str | None]:
    """(country, carrier hint, line type hint); Nones for short codes and alphanumerics."""
    if not phone.startswith("+"):
        return None, None, None
    split = _split(phone)
    if split is None:
        return None, None, None
    code, national = split
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    # The prefix, padded to the number's length (validity depends on length) with a digit
    # that keeps the cache key the same for every number sharing the prefix.
    region, kind = _by_prefix(code, national[:PREFIX] + "5" * max(0, len(national) - PREFIX))
    if len(regions) == 1 and region is None:
        region = regions[0]
    # name_for_valid_number is a prefix lookup whose contract is a valid number: it names O2
    # for the Ofcom drama number +447700900123. name_for_number checks the number's validity
    # and type first (~15 µs: a full parse), so it runs only where the prefix names a carrier.
    hint = (carrier.name_for_valid_number(number, "en")
            and carrier.name_for_number(number, "en")) or None
    return region, hint, kind
