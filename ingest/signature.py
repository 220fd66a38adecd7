"""Twilio webhook signatures (``X-Twilio-Signature``).

Twilio signs ``base64(HMAC(auth token, URL + each POST parameter sorted by name: name + value))``
with the URL it called. ``WebhookSigner`` computes exactly what
``twilio.request_validator.RequestValidator.compute_signature`` computes (a hypothesis test holds
them equal), but with the HMAC's two keyed hash states made once (RFC 2104: per request only the
message and one digest are hashed, not the key again) and compares in constant time; ``verify``
accepts the URL with and without the default port, as the twilio library does.

``WebhookVerifier`` chooses the secret: Twilio signs with the account's auth token (primary, or
the secondary during a rotation), or, when the request carries
``X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=<...>``, with that SharedKey's
secret. Each secret has its own ``WebhookSigner``, so every one of them takes the fast path.
"""

from __future__ import annotations

import binascii
import enum
import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from schema.settings import Secret, Settings, shared_keys

log = logging.getLogger("smsledger.ingest.signature")

_ALGORITHMS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}


def algorithm_of(settings_header: str | None) -> str:
    """The algorithm named by ``X-Twilio-Webhooks-Signature-Settings``; HMAC_SHA1 if none."""
    if not settings_header:
        return "HMAC_SHA1"
    for part in settings_header.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def key_id_of(settings_header: str | None) -> str | None:
    """The SharedKey id named by ``X-Twilio-Webhooks-Signature-Settings`` (``key=<id>``), or
    None: then the webhook is signed with the auth token."""
    if not settings_header:
        return None
    for part in settings_header.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "key" and value.strip():
            return value.strip()
    return None


@functools.lru_cache(maxsize=512)
def _url_variants(url: str) -> tuple[str, ...]:
    """The URL as given, without its port, and with the scheme's default port."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    if parts.port:
        bare = host.rsplit(":", 1)[0]
        return (url, urlunsplit(parts._replace(netloc=bare)))
    default = 443 if parts.scheme == "https" else 80
    return (url, urlunsplit(parts._replace(netloc=f"{host}:{default}")))


def _keyed_states(key: bytes, name: str) -> tuple[Any, Any]:
    """HMAC's inner and outer hash states after the key block (RFC 2104): ``HMAC(k, m) =
    H((k ^ opad) + H((k ^ ipad) + m))``, a key longer than the block hashed first."""
    block = hashlib.new(name).block_size
    if len(key) > block:
        key = hashlib.new(name, key).digest()
    key = key.ljust(block, b"\0")
    return (hashlib.new(name, bytes(b ^ 0x36 for b in key)),
            hashlib.new(name, bytes(b ^ 0x5C for b in key)))


class WebhookSigner:
    def __init__(self, token: Secret) -> None:
        key = token.reveal().encode()
        self._states = {name: _keyed_states(key, name) for name in _ALGORITHMS.values()}

    def __repr__(self) -> str:
        return "WebhookSigner(token=Secret('**********'))"

    @staticmethod
    def _canonical_params(params: Mapping[str, str | Sequence[str]]) -> bytes:
        """What follows the URL in the signed string: each name + value, sorted."""
        try:  # names are unique, so sorting the names sorts the pairs
            joined = "".join([name + params[name] for name in sorted(params)])  # type: ignore[operator]
            return joined.encode()
        except TypeError:
            pass  # a repeated name: its values are a list
        parts = []
        for name, value in sorted(params.items()):
            if isinstance(value, str):
                parts.append(name + value)
            else:
                parts.extend(name + v for v in sorted(set(value)))
        return "".join(parts).encode()

    def _digest(self, url: str, canonical: bytes, digest: str) -> bytes:
        # Copying the keyed states costs about half of a one-shot hmac.digest, which sets up
        # OpenSSL's HMAC and hashes the key blocks again on every call.
        inner_state, outer_state = self._states[digest]
        inner = inner_state.copy()
        inner.update(url.encode() + canonical)
        outer = outer_state.copy()
        outer.update(inner.digest())
        return binascii.b2a_base64(outer.digest(), newline=False)

    def sign(self, url: str, params: Mapping[str, str | Sequence[str]],
             algorithm: str = "HMAC_SHA1") -> str:
        return self._digest(url, self._canonical_params(params), _ALGORITHMS[algorithm]).decode()

    def verify(self, url: str, params: Mapping[str, str | Sequence[str]], signature: str,
               algorithm: str = "HMAC_SHA1") -> bool:
        digest = _ALGORITHMS.get(algorithm)
        if digest is None or not signature:
            return False
        given = signature.strip().encode()
        canonical = self._canonical_params(params)
        # Each comparison is constant-time; stopping at the first match only tells which URL
        # form Twilio used, which is no secret.
        for variant in _url_variants(url):
            if hmac.compare_digest(self._digest(variant, canonical, digest), given):
                return True
        return False


class Matched(enum.StrEnum):
    """Which secret a webhook's signature was made with (the metric's label)."""
    AUTH_TOKEN = "auth_token"
    AUTH_TOKEN_SECONDARY = "auth_token_secondary"
    SHARED_KEY = "shared_key"


class UnknownKey(Exception):
    """The settings header names a SharedKey id that is not configured."""

    def __init__(self, key_id: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id


SECONDARY_WARN_EVERY_S = 3600.0


class WebhookVerifier:
    """The secrets a webhook may be signed with, tried cheapest first.

    Without a SharedKey header: the primary auth token (the usual case, one HMAC), then the
    secondary while it is set. With ``key=<id>``: that key's secret only. The auth token is not
    tried then: Twilio signed with the key, and trying more secrets than the one named only
    widens what a forger may guess."""

    def __init__(self, token: Secret, secondary: Secret | None = None,
                 keys: dict[str, Secret] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._primary = WebhookSigner(token)
        self._secondary = WebhookSigner(secondary) if secondary else None
        self._keys = {key_id: WebhookSigner(secret) for key_id, secret in (keys or {}).items()}
        self._clock = clock
        self._secondary_warned_at: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookVerifier:
        keys = shared_keys(settings.webhook_shared_keys.reveal())
        return cls(settings.twilio_auth_token, settings.twilio_auth_token_secondary,
                   {key_id: Secret(secret) for key_id, secret in keys.items()})

    def __repr__(self) -> str:
        return (f"WebhookVerifier(secondary={self._secondary is not None}, "
                f"shared_keys={sorted(self._keys)})")

    def verify(self, url: str, params: Mapping[str, str | Sequence[str]], signature: str,
               settings_header: str | None) -> Matched | None:
        """Which secret signed the request, or None when none did. ``UnknownKey`` when the
        header names a key id that is not configured."""
        algorithm = algorithm_of(settings_header)
        key_id = key_id_of(settings_header) if settings_header else None
        if key_id is not None:
            signer = self._keys.get(key_id)
            if signer is None:
                raise UnknownKey(key_id)
            return Matched.SHARED_KEY if signer.verify(url, params, signature, algorithm) \
                else None
        if self._primary.verify(url, params, signature, algorithm):
            return Matched.AUTH_TOKEN
        if self._secondary is not None and self._secondary.verify(url, params, signature,
                                                                   algorithm):
            self._warn_secondary()
            return Matched.AUTH_TOKEN_SECONDARY
        return None

    def _warn_secondary(self) -> None:
        """Once an hour at most: the rotation is not finished while Twilio still signs with
        the secondary token (promote it, or unset TWILIO_AUTH_TOKEN_SECONDARY)."""
        now = self._clock()
        last = self._secondary_warned_at
        if last is None or now - last >= SECONDARY_WARN_EVERY_S:
            self._secondary_warned_at = now
            log.warning("a webhook was signed with TWILIO_AUTH_TOKEN_SECONDARY: the auth token "
                        "rotation is still in progress (next reminder in an hour at most)")
