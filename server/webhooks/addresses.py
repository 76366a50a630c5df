"""What an admin may give as a webhook: an https URL with a host, nothing hidden in it, a
shared secret long enough to sign with, event kinds that exist, a CA that parses."""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import Iterable

from sonde.server.domain.ticket_model import TicketEventKind
from sonde.server.errors import InvalidArgument

MAX_URL_CHARS = 2048
MIN_SECRET_CHARS = 16
MAX_SECRET_CHARS = 1024
MAX_CA_CHARS = 64 * 1024


def checked_url(url: str) -> str:
    """`url` as given, or InvalidArgument saying what is refused: https only (the body holds
    ticket contents and the signature's secret must not be sniffable); no user or password,
    fragment or whitespace; a host."""
    shown = repr(url[:80])
    if len(url) > MAX_URL_CHARS:
        raise InvalidArgument(f"a webhook URL is at most {MAX_URL_CHARS} characters")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidArgument(f"{shown}: a webhook URL holds no spaces or control characters")
    try:
        where = urllib.parse.urlsplit(url)
        port = where.port
    except ValueError as error:
        raise InvalidArgument(f"{shown} is not a URL: {error}") from None
    if where.scheme != "https":
        raise InvalidArgument(
            f"{shown}: a webhook is https://HOST[:PORT]/PATH (plain http and other schemes are "
            "refused: the body holds ticket contents)"
        )
    if not where.hostname:
        raise InvalidArgument(f"{shown}: say the receiver's host (https://HOST/PATH)")
    if "@" in where.netloc:
        raise InvalidArgument(
            f"{shown}: a webhook URL holds no user or password; the receiver checks the "
            "signature instead (docs/webhooks.md)"
        )
    if where.fragment or url.endswith("#"):
        raise InvalidArgument(f"{shown}: a webhook URL has no #fragment (it is never sent)")
    if port == 0:
        raise InvalidArgument(f"{shown}: port 0 is not a receiver's port")
    if not all(c.isascii() for c in where.netloc):
        raise InvalidArgument(f"{shown}: write the host in ASCII (its punycode, xn--...)")
    return url


def checked_secret(secret: str) -> bytes:
    """The shared secret's bytes; never quoted in a message."""
    if len(secret) < MIN_SECRET_CHARS:
        raise InvalidArgument(
            f"the shared secret is {len(secret)} characters; at least {MIN_SECRET_CHARS} are "
            "needed (e.g. `openssl rand -hex 32 > webhook.secret`)"
        )
    if len(secret) > MAX_SECRET_CHARS:
        raise InvalidArgument(f"the shared secret is at most {MAX_SECRET_CHARS} characters")
    if not secret.isprintable() or any(c.isspace() for c in secret):
        raise InvalidArgument("the shared secret holds spaces or control characters")
    return secret.encode()


def checked_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """The event kinds asked for, sorted; () for every kind."""
    known = {kind.value for kind in TicketEventKind}
    given = sorted({kind.strip() for kind in kinds if kind.strip()})
    unknown = [kind for kind in given if kind not in known]
    if unknown:
        raise InvalidArgument(
            f"no ticket event kind {', '.join(repr(k[:40]) for k in unknown[:5])}; the kinds "
            f"are {', '.join(sorted(known))}"
        )
    return tuple(given)


def checked_ca(ca_pem: str) -> str:
    """A PEM CA bundle the receiver's certificate is checked with ("" the system's)."""
    if not ca_pem:
        return ""
    if len(ca_pem) > MAX_CA_CHARS:
        raise InvalidArgument(f"the CA file is at most {MAX_CA_CHARS:,} characters")
    try:
        ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as error:
        raise InvalidArgument(f"the CA file is not PEM certificates: {error}") from None
    return ca_pem
