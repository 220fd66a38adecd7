"""schema.events split by concern (vocabulary and builders; a translator per source under
schema.sources; the batch encoding in schema.store): every name it exported still imports from
it, and is the moved object itself."""

from __future__ import annotations

import pytest

from schema import events, store
from schema.sources import event_streams, messages_api, webhooks

MOVED = {"status_callback": webhooks, "inbound_message": webhooks,
         "cloud_event": event_streams, "CLOUD_STATUS_PREFIX": event_streams,
         "CLOUD_INBOUND": event_streams, "api_message": messages_api,
         "resource_time": messages_api, "consent_from_resource": messages_api,
         "as_json_rows": store}
STAYED = ["EventType", "Source", "InvalidEvent", "Event", "OPT_OUT_KEYWORDS",
          "OPT_IN_KEYWORDS", "HELP_KEYWORDS", "TERMINAL_STATUSES", "CATEGORIES", "PayloadValue",
          "Form", "utc_now", "parse_error_code", "message_status", "message_inbound",
          "keyword_of", "message_sent", "message_send_failed", "message_refused",
          "verification", "suppression", "number_looked_up", "otp_confirmed", "EARLIEST",
          "LATEST", "utc_bounded", "price_amount", "message_priced", "message_priced_from",
          "alert_transition", "alert_notified"]


@pytest.mark.parametrize("name", sorted(MOVED))
def test_moved_names_still_import_from_schema_events(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from schema.events import {name}", namespace)  # noqa: S102 (a fixed import line)
    assert namespace[name] is getattr(MOVED[name], name)


def test_the_vocabulary_stays_and_unknown_names_fail() -> None:
    for name in STAYED:
        assert name in vars(events), name
    with pytest.raises(ImportError):
        exec("from schema.events import no_such_thing", {})  # noqa: S102
