"""One webhook POST over HTTPS with aiohttp (already the server's web framework): the
receiver's certificate verified (its CA given at add, else the system's store), no redirect
followed, no proxy from the environment, the whole exchange bounded in time, and nothing of the
answer read but its status line and headers (aiohttp caps each header line at 8 KiB)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import aiohttp

import sonde

TOTAL_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
MAX_REASON_CHARS = 80
USER_AGENT = f"sonde-webhooks/{sonde.__version__}"


@dataclass(frozen=True)
class Answer:
    """What came of one POST: delivered (2xx), or why not, in words for `sonde webhook list`."""

    delivered: bool
    problem: str = ""


def tls_context(ca_pem: str) -> ssl.SSLContext:
    """Verified TLS 1.2 or later: with `ca_pem` only when given, else the system's CAs."""
    context = ssl.create_default_context(cadata=ca_pem or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _inert(text: str) -> str:
    """A receiver's words, kept to printable ASCII and short: they are shown to an admin."""
    kept = "".join(c if c.isascii() and c.isprintable() else "?" for c in text)
    return kept[:MAX_REASON_CHARS]


def _problem(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return f"the receiver's certificate is not trusted: {_inert(str(error.certificate_error))}"
    if isinstance(error, aiohttp.ClientConnectorSSLError):
        return f"TLS failed: {_inert(str(error))}"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect: {_inert(error.strerror or str(error.os_error))}"
    if isinstance(error, aiohttp.ClientResponseError):
        return f"a malformed answer: {_inert(error.message)}"
    return f"{type(error).__name__}: {_inert(str(error))}"


class Poster:
    """POSTs through one aiohttp session (its connections kept alive across a backlog)."""

    def __init__(
        self,
        *,
        total_timeout_s: float = TOTAL_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.total_timeout_s = total_timeout_s
        self._timeout = aiohttp.ClientTimeout(total=total_timeout_s, sock_connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    def _context(self, ca_pem: str) -> ssl.SSLContext:
        context = self._contexts.get(ca_pem)
        if context is None:
            if len(self._contexts) > 64:
                self._contexts.clear()
            context = self._contexts[ca_pem] = tls_context(ca_pem)
        return context

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, ca_pem: str = ""
    ) -> Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                trust_env=False,
                auto_decompress=False,
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=60),
            )
        sent = {
            **headers,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        try:
            async with asyncio.timeout(self.total_timeout_s + 1):
                async with self._session.post(
                    url,
                    data=body,
                    headers=sent,
                    allow_redirects=False,
                    ssl=self._context(ca_pem),
                ) as response:
                    status, reason = response.status, _inert(response.reason or "")
                    response.close()  # the body is not read: a huge one costs nothing
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            return Answer(False, _problem(error, self.total_timeout_s))
        if 200 <= status < 300:
            return Answer(True)
        if 300 <= status < 400:
            return Answer(False, f"HTTP {status} {reason}: redirects are not followed")
        return Answer(False, f"HTTP {status} {reason}".rstrip())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
