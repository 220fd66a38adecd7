"""What a number says about itself: country, and the carrier and line type phonenumbers knows
(its carrier data is the hint used where Twilio Lookup is off; it knows little of the US)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberType, carrier

_TYPES = {PhoneNumberType.MOBILE: "mobile", PhoneNumberType.FIXED_LINE: "landline",
          PhoneNumberType.FIXED_LINE_OR_MOBILE: "mobile", PhoneNumberType.TOLL_FREE: "tollFree",
          PhoneNumberType.PREMIUM_RATE: "premium", PhoneNumberType.SHARED_COST: "sharedCost",
          PhoneNumberType.VOIP: "nonFixedVoip", PhoneNumberType.PERSONAL_NUMBER: "personal",
          PhoneNumberType.PAGER: "pager", PhoneNumberType.UAN: "uan",
          PhoneNumberType.VOICEMAIL: "voicemail"}


def describe(phone: str) -> tuple[str | None, str | None, str | None]:
    """(country, carrier hint, line type hint); Nones for short codes and alphanumerics."""
    if not phone.startswith("+"):
        return None, None, None
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None, None, None
    country = phonenumbers.region_code_for_number(parsed)
    hint = carrier.name_for_number(parsed, "en") or None
    kind = _TYPES.get(phonenumbers.number_type(parsed))
    return country, hint, kind
