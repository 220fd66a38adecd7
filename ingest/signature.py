"""Twilio webhook signatures (``X-Twilio-Signature``).

Twilio signs ``base64(HMAC(auth token, URL + each POST parameter sorted by name: name + value))``
with the URL it called. ``WebhookSigner`` computes exactly what
``twilio.request_validator.RequestValidator.compute_signature`` computes (a hypothesis test holds
them equal), but with the HMAC's two keyed hash states made once (RFC 2104: per request only the
message and one digest are hashed, not the key again) and compares in constant time; ``verify``
accepts the URL with and without the default port, as the twilio library does.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from schema.settings import Secret

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
