"""What the HTTP channels (WhatsApp, SMS, push, webhook) share: one ``aiohttp.ClientSession`` per
channel and the classification of transport failures.

The session is created lazily inside the running loop (a session must not outlive or predate its
loop) with a connection limit equal to the pool's concurrency, so keep-alive connections are reused
across messages. ``close()`` closes it; the pool calls that from ``stop()``.

Transport failures, classified once here (see :mod:`channels.sender`):

* could not connect (refused, DNS, connect timeout) → transient: nothing reached the provider;
* anything after the request started (read timeout, connection reset, server disconnected,
  a truncated body) → uncertain: the provider may have accepted the message.

Redirects are not followed: a 3xx is the answer, classified by the channel (a permanent failure).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from channels.message import DeliveryResult
from channels.retry import parse_retry_after

__all__ = ["HttpAnswer", "HttpChannel"]

log = logging.getLogger("cartwheel.channels.http")


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A provider's HTTP response, read in full."""

    status: int
    body: bytes
    retry_after_s: float | None

    def json(self) -> Any:
        """The body as JSON, or None if it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


class HttpChannel:
    """Base for the HTTP senders: owns the session, posts, and turns transport errors into results.

    Args:
        timeout_s: total time allowed for one request, seconds.
        concurrency: maximum open connections (match the pool's concurrency).
    """

    kind = "http"

    def __init__(self, *, timeout_s: float = 10.0, concurrency: int = 8) -> None:
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=max(0.1, self.timeout_s / 2)),
                connector=aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency),
                headers={"User-Agent": "cartwheel/0.1"},
            )
        return session

    async def _post(
        self,
        url: str,
        *,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> HttpAnswer | DeliveryResult:
        """POST ``body``; the full answer, or a failed/uncertain result when the transport failed."""
        all_headers = {"Content-Type": content_type}
        if headers:
            all_headers.update(headers)
        try:
            # No redirects: aiohttp would follow a 301/302 to a POST with a GET without the body, and the
            # page found there answer 200 for a message nobody received. A redirect is the answer.
            async with self._client().post(url, data=body, headers=all_headers, allow_redirects=False) as response:
                data = await response.read()
                retry_after = parse_retry_after(response.headers.get("Retry-After"), response.headers.get("Date"))
                return HttpAnswer(response.status, data, retry_after)
        except aiohttp.ClientConnectorError as exc:  # includes DNS and refused: nothing was sent
            return DeliveryResult.transient(f"connect failed: {exc.os_error or exc}")
        except aiohttp.ConnectionTimeoutError:
            return DeliveryResult.transient("connect timed out")
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            return DeliveryResult.uncertain(f"no answer within {self.timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return DeliveryResult.uncertain(f"connection lost: {type(exc).__name__}: {exc}")
        except OSError as exc:
            return DeliveryResult.uncertain(f"connection lost: {exc}")

    async def close(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


def json_body(payload: Any) -> bytes:
    """Compact JSON bytes (the body that is sent, and signed for webhooks)."""
    return orjson.dumps(payload)
