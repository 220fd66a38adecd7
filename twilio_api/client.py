"""The twilio client the ingester sends with, optionally pointed at another base URL.

``twilio.rest.Client`` has no base-URL setting; an ``AsyncTwilioHttpClient`` subclass rewrites
scheme and host of every request (api, lookups, verify) to ``SMSLEDGER_TWILIO_API_URL`` when it
is set, which is how the demo, the tests and the benchmarks reach the local simulator.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from schema.settings import Settings


class RedirectingHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    def __init__(self, base_url: str, timeout_s: float) -> None:
        super().__init__(pool_connections=False)
        self._base = base_url.rstrip("/")
        # Our own session (created inside the running loop, closed by close()).
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def request(self, method: str, url: str, params: Any = None, data: Any = None,
                      headers: Any = None, auth: Any = None,
                      timeout: Any = None,  # noqa: ASYNC109 (the signature is twilio's)
                      allow_redirects: bool = False) -> Response:
        if self._base:
            parts = urlsplit(url)
            url = self._base + parts.path + (f"?{parts.query}" if parts.query else "")
        if auth is not None:
            # The header ourselves: the base class builds aiohttp.BasicAuth, which newer
            # aiohttp deprecates.
            headers = dict(headers or {})
            pair = f"{auth[0]}:{auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        response: Response = await super().request(method, url, params=params, data=data,
                                                   headers=headers, auth=None, timeout=None,
                                                   allow_redirects=allow_redirects)
        return response


# Twilio could not be reached at all (refused, DNS, timeout): nothing happened there.
UNREACHABLE = (aiohttp.ClientError, OSError, TimeoutError)


def make_client(settings: Settings) -> tuple[Client, RedirectingHttpClient]:
    """A twilio client and its HTTP client (close the latter). Call inside a running loop."""
    http = RedirectingHttpClient(settings.twilio_api_url, settings.twilio_timeout_s)
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token.reveal(),
                    http_client=http)
    return client, http
