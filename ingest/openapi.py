"""The OpenAPI 3.1 description of the ingester's HTTP API, served at ``/openapi.json``.

Declared here, once; ``tests/test_openapi.py`` holds it equal to the routes the app serves and
fuzzes the app against it with schemathesis.
"""

from __future__ import annotations

from typing import Any

from schema.events import CATEGORIES


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


COMMON_ERRORS = {
    "400": _error("malformed input (missing field, a field not in Twilio's shape, too many "
                  "form fields, NUL byte, invalid UTF-8 or JSON, JSON nested too deep)"),
    "408": _error("the body did not arrive within SMSLEDGER_BODY_TIMEOUT_S"),
    "413": _error("body over the size limit"),
    "415": _error("wrong Content-Type"),
    "503": _error("overloaded (or too many bodies arriving slowly), or neither PostgreSQL nor "
                  "the spool could take the events"),
}
SIGNED = {"name": "X-Twilio-Signature", "in": "header", "required": True,
          "description": "base64 HMAC of SMSLEDGER_PUBLIC_URL + path + query (+ sorted form "
                         "parameters) with the auth token", "schema": {"type": "string"}}
FORM_FIELD = {"type": "string"}
# Field shapes Twilio documents (TWILIO.md), as the ingester checks them before it trusts a
# signed form (ingest/forms.py check_twilio_shapes): the spec says them too, so a generated
# valid request passes. `format: e164` is a number libphonenumber holds valid (what /v1
# requires); the pattern is its shape.
E164 = {"type": "string", "format": "e164", "pattern": r"^\+[1-9][0-9]{6,14}$",
        "description": "E.164, e.g. +14155550123"}
# A webhook's From/To: E.164 (WhatsApp's prefixed too), a short code, or an alphanumeric
# sender ID (1-11 letters, digits and spaces, at least one letter).
PARTY = {"type": "string", "anyOf": [
    {"format": "e164", "pattern": r"^\+[1-9][0-9]{1,14}$"},
    {"pattern": r"^whatsapp:\+[1-9][0-9]{1,14}$"},
    {"pattern": r"^[0-9]{3,8}$"},
    {"pattern": r"^(?=[0-9 ]*[A-Za-z])[A-Za-z0-9 ]{1,11}$"}]}
MESSAGE_SID = {"type": "string", "pattern": "^(SM|MM)[0-9a-f]{32}$",
               "description": "SM or MM + 32 lower-case hex digits; every copy the same"}
STATUS = {"type": "string", "pattern": "^[a-z][a-z_]{0,31}$",
          "description": "lower case; statuses Twilio adds later are stored too"}
SHAPES = {"MessageSid": MESSAGE_SID, "SmsSid": MESSAGE_SID,
          "AccountSid": {"type": "string", "pattern": "^AC[0-9a-f]{32}$",
                         "description": "TWILIO_ACCOUNT_SID's, when that is set"},
          "MessagingServiceSid": {"type": "string"},
          "MessageStatus": STATUS, "SmsStatus": STATUS,
          "ErrorCode": {"type": "string", "pattern": "^[0-9]{1,9}$"},
          "ApiVersion": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
          "From": PARTY, "To": PARTY}


def _form(required: list[list[str]], fields: list[str]) -> dict[str, Any]:
    """A form whose ``required`` is a list of alternatives per field: Twilio sends the legacy
    copies (SmsSid, SmsStatus) as well, and either one is enough."""
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object",
        "allOf": [{"anyOf": [{"required": [name]} for name in names]} for names in required],
        "properties": {name: SHAPES.get(name, FORM_FIELD) for name in fields},
        "additionalProperties": FORM_FIELD}}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


V1_ERRORS = {**COMMON_ERRORS, "401": _error("missing or wrong API key")}
TAGS = {"type": "array", "maxItems": 20,
        "items": {"type": "string", "minLength": 1, "maxLength": 100}}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "smsledger ingester", "version": "0.1.0",
             "description": "Twilio webhooks in, immutable events out; the /v1 send API."},
    "components": {
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                       "description": "SMSLEDGER_API_KEY"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}},
                      "additionalProperties": True},
            "Sent": {"type": "object", "required": ["sid", "to"], "properties": {
                "sid": {"type": "string", "pattern": "^(SM|MM)[0-9a-fA-F]{32}$"},
                "to": E164, "from": {"type": "string", "maxLength": 200},
                "messaging_service_sid": {"type": "string", "maxLength": 200},
                "category": {"enum": sorted(CATEGORIES)},
                "sent_at": {"type": "string", "format": "date-time"},
                "tags": TAGS}},
        },
    },
    "paths": {
        "/twilio/status": {"post": {
            "summary": "Twilio status callback → message.status",
            "parameters": [SIGNED], "requestBody": _form(
                [["MessageSid", "SmsSid"], ["MessageStatus", "SmsStatus"], ["AccountSid"],
                 ["From"], ["To"]],
                ["MessageSid", "SmsSid", "MessageStatus", "SmsStatus", "AccountSid", "From",
                 "To", "ErrorCode", "RawDlrDoneDate", "MessagingServiceSid", "ApiVersion"]),
            "responses": {"200": {"description": "stored (or already stored)"},
                          "403": _error("signature missing or wrong"), **COMMON_ERRORS}}},
        "/twilio/inbound": {"post": {
            "summary": "Inbound SMS → message.inbound (+ contact.opted_out/in, help)",
            "parameters": [SIGNED], "requestBody": _form(
                [["MessageSid", "SmsSid"], ["AccountSid"], ["From"], ["To"]],
                ["MessageSid", "SmsSid", "AccountSid", "MessagingServiceSid", "From", "To",
                 "Body", "NumMedia", "NumSegments", "OptOutType"]),
            "responses": {"200": {"description": "stored; TwiML reply",
                                  "content": {"text/xml": {"schema": {"type": "string"}}}},
                          "403": _error("signature missing or wrong"), **COMMON_ERRORS}}},
        "/twilio/events": {"post": {
            "summary": "Event Streams webhook sink (CloudEvents)",
            "parameters": [SIGNED, {"name": "bodySHA256", "in": "query", "required": True,
                                    "schema": {"type": "string"}}],
            "requestBody": _json({"type": "array", "items": {
                "type": "object", "required": ["id", "type", "data"],
                "properties": {"id": {"type": "string", "minLength": 1},
                               "type": {"type": "string"},   # unknown types skipped
                               # a time that is not ISO 8601 text (or none) is
                               # replaced by the time the event arrived
                               "time": {}, "data": {"type": "object"}}}}),
            "responses": {"200": {"description": "stored", "content": {"application/json": {
                "schema": {"type": "object"}}}},
                "403": _error("signature or bodySHA256 missing or wrong"), **COMMON_ERRORS}}},
        "/v1/messages": {"post": {
            "summary": "Send an SMS through Twilio and record it", "security": [{"apiKey": []}],
            "requestBody": _json({"type": "object", "required": ["to"], "properties": {
                "to": E164,
                # not blank (unless media_urls are given: the schema asks for text always)
                "body": {"type": "string", "minLength": 1, "maxLength": 1600,
                         "pattern": r"\S"},
                "from": {"type": "string", "maxLength": 200},
                "messaging_service_sid": {"type": "string", "maxLength": 200},
                "media_urls": {"type": "array", "maxItems": 10, "items": {
                    "type": "string", "pattern": "^https?://"}},
                "category": {"enum": sorted(CATEGORIES)}, "tags": TAGS}}),
            "responses": {"201": {"description": "sent and recorded"},
                          "409": _error("recipient opted out or suppressed (the body's "
                                        "`scope` says which scope refused)"),
                          "502": _error("Twilio unreachable; nothing sent or stored"),
                          **V1_ERRORS,
                          "400": _error("malformed input, or Twilio refused the message "
                                        "(twilio_code)")}}},
        "/v1/events/sent": {"post": {
            "summary": "Record sends made elsewhere (idempotent by sid)",
            "security": [{"apiKey": []}],
            "requestBody": _json({"oneOf": [
                {"$ref": "#/components/schemas/Sent"},
                {"type": "array", "items": {"$ref": "#/components/schemas/Sent"},
                 "minItems": 1, "maxItems": 1000}]}),
            "responses": {"200": {"description": "stored and duplicates counted"},
                          **V1_ERRORS}}},
        "/v1/verify/start": {"post": {
            "summary": "Start a Twilio Verify verification", "security": [{"apiKey": []}],
            "requestBody": _json({"type": "object", "required": ["to"], "properties": {
                "to": E164, "channel": {"enum": ["sms", "call", "email", "whatsapp"]}}}),
            "responses": {"201": {"description": "pending"},
                          "409": _error("recipient opted out or suppressed"),
                          "502": _error("Twilio unreachable"), **V1_ERRORS}}},
        "/v1/verify/check": {"post": {
            "summary": "Check a Twilio Verify code", "security": [{"apiKey": []}],
            "requestBody": _json({"type": "object", "required": ["to", "code"], "properties": {
                "to": E164, "code": {"type": "string", "pattern": "^[0-9]{4,10}$"}}}),
            "responses": {"200": {"description": "approved or pending"},
                          "404": _error("no pending verification"),
                          "502": _error("Twilio unreachable"), **V1_ERRORS}}},
        "/v1/otp/confirm": {"post": {
            "summary": "The user used an OTP: Twilio Message Feedback outcome=confirmed, and "
                       "otp.confirmed (once per message)", "security": [{"apiKey": []}],
            "requestBody": _json({"type": "object", "required": ["sid"], "properties": {
                "sid": {"type": "string", "pattern": "^(SM|MM)[0-9a-f]{32}$"}}}),
            "responses": {"200": {"description": "already confirmed; Twilio not called again"},
                          "201": {"description": "feedback posted and otp.confirmed stored"},
                          "404": _error("no such message sent or recorded"),
                          "409": _error("the message is not an OTP"),
                          "502": _error("Twilio unreachable; nothing stored"), **V1_ERRORS}}},
        "/healthz": {"get": {"summary": "The process is up",
                             "responses": {"200": {"description": "ok"}}}},
        "/readyz": {"get": {"summary": "ready / degraded (spooling) / unavailable",
                            "responses": {"200": {"description": "ready or degraded"},
                                          "503": {"description": "cannot take events"}}}},
        "/metrics": {"get": {"summary": "Prometheus text",
                             "responses": {"200": {"description": "metrics", "content": {
                                 "text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    },
}
