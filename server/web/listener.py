"""The web listener: HTTPS, on the server's own event loop and certificate (pki/server.crt),
serving the self-service request form and the satisfaction question (docs/web.md).

aiohttp is the web framework of the server's web side, chosen for the technicians' web console
that will follow: it runs inside the process and loop that serve gRPC (an AppRunner, no second
server or thread), takes the server's ssl.SSLContext as is, and is typed. The console will sign
technicians in with their API tokens and check each action with the same ROLE_PERMISSIONS.

Paths: `GET /` the form, `POST /requests` a request, `GET|POST /rate/<token>` the rating,
`GET /style.css`; anything else 404, another method 405. Bounded against a hostile client:
a body over MAX_BODY_BYTES is refused with 413 before it is read, a body must arrive within
BODY_TIMEOUT_S, and each address may send MAX_REQUESTS requests in REQUEST_WINDOW_S (then 429,
the form shown again with what was typed); the connections themselves, how many and how long
their heads may take, are bounded by server/web/connections.py. Every answer carries a CSP
that allows no script, no frame and no other origin, and no Referer leaves the site (a rating
link is a secret).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from sonde.server.api.listeners import CannotListen, bind_failure_reason
from sonde.server.domain.satisfaction import Satisfaction, checked_rating
from sonde.server.domain.web_requests import (
    SUBMISSION_ID,
    FormRefused,
    WebRequests,
    checked_form,
    new_submission_id,
)
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.settings import split_address
from sonde.server.web import pages
from sonde.server.web.connections import WebConnectionLimits, WebConnections
from sonde.server.web.rate_limit import PeerLimiter

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 15.0
MAX_REQUESTS = 5
REQUEST_WINDOW_S = 600.0
# How long a closed connection waits for the client's TLS close_notify (asyncio's default: 30 s).
TLS_GOODBYE_TIMEOUT_S = 5.0
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=31536000",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The security headers on every answer, errors included, and the body's size checked
    before any of it is read."""
    try:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            response: web.StreamResponse = _html(
                pages.message(
                    "Too long",
                    "What you sent is over 64 KiB: the description takes at most 4,000 "
                    "characters. Go back: your browser still has what you typed.",
                ),
                413,
            )
        else:
            response = await handler(request)
    except web.HTTPException as refused:
        if refused.status == 413:
            text = "What you sent is over 64 KiB. Go back: your browser still has what you typed."
        else:
            text = refused.reason
        response = _html(pages.message(refused.reason, text), refused.status)
    response.headers.update(SECURITY_HEADERS)
    return response


class WebListener:
    """`await listener.start(address)` -> port, then `attach(requests, satisfaction)` (the
    server knows its rating links' address only once the port is bound); `stop()`. Until
    attached, the form answers 503."""

    def __init__(
        self,
        certificate: Path,
        key: Path,
        *,
        mails_requesters: bool,
        limiter: PeerLimiter | None = None,
        limits: WebConnectionLimits | None = None,
    ) -> None:
        self._requests: WebRequests | None = None
        self._satisfaction: Satisfaction | None = None
        self._mails = mails_requesters
        self._limiter = limiter or PeerLimiter(MAX_REQUESTS, REQUEST_WINDOW_S)
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._tls.load_cert_chain(certificate, key)
        self._runner: web.AppRunner | None = None
        self._listening: asyncio.Server | None = None
        self.connections = WebConnections(limits or WebConnectionLimits(), self._new_handler)
        self.port = 0

    def _new_handler(self) -> RequestHandler:
        assert self._runner is not None
        assert self._runner.server is not None
        return self._runner.server()

    def attach(self, requests: WebRequests, satisfaction: Satisfaction) -> None:
        self._requests = requests
        self._satisfaction = satisfaction

    def _ready(self) -> tuple[WebRequests, Satisfaction]:
        if self._requests is None or self._satisfaction is None:
            raise web.HTTPServiceUnavailable(reason="Starting", headers={"Retry-After": "5"})
        return self._requests, self._satisfaction

    def application(self) -> web.Application:
        middlewares = [_guard, self.connections.middleware]
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
        app.router.add_get("/", self._form)
        app.router.add_get("/style.css", self._style)
        app.router.add_post("/requests", self._submit)
        app.router.add_get("/rate/{token}", self._rating)
        app.router.add_post("/rate/{token}", self._rate)
        return app

    async def start(self, address: str) -> int:
        host, port = split_address(address)
        limits = self.connections.limits
        self._runner = web.AppRunner(
            self.application(), access_log=None, keepalive_timeout=limits.idle_timeout_s
        )
        await self._runner.setup()
        try:
            self._listening = await asyncio.get_running_loop().create_server(
                self.connections, host or None, port,
                ssl=self._tls, ssl_handshake_timeout=limits.head_timeout_s,
                ssl_shutdown_timeout=TLS_GOODBYE_TIMEOUT_S,
            )  # fmt: skip
        except OSError:
            await self._runner.cleanup()
            raise CannotListen(address, "the web form", bind_failure_reason(address)) from None
        self.port = int(self._listening.sockets[0].getsockname()[1])  # for port 0 too
        return self.port

    async def stop(self) -> None:
        listening, self._listening = self._listening, None
        runner, self._runner = self._runner, None
        if listening is not None:
            listening.close()
        if runner is not None:
            await runner.cleanup()  # closes every connection its handlers hold
        if listening is not None:
            await listening.wait_closed()

    async def _form(self, request: web.Request) -> web.StreamResponse:
        self._ready()
        return _html(pages.request_form(new_submission_id()))

    async def _style(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=pages.STYLE, content_type="text/css", charset="utf-8")

    async def _fields(self, request: web.Request) -> dict[str, str]:
        try:
            posted = await asyncio.wait_for(request.post(), BODY_TIMEOUT_S)
        except TimeoutError:
            raise web.HTTPRequestTimeout() from None
        except ValueError:  # not a form, or not UTF-8
            raise web.HTTPBadRequest(reason="Not a form") from None
        return {name: value for name, value in posted.items() if isinstance(value, str)}

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        requests, _ = self._ready()
        fields = await self._fields(request)
        submission = fields.get("submission", "")
        if not SUBMISSION_ID.fullmatch(submission):
            submission = new_submission_id()
        peer = request.remote or ""
        try:
            form = checked_form(fields)
        except FormRefused as refused:
            return _html(pages.request_form(submission, refused.values, refused.problems), 422)
        wait_s = self._limiter.wait_s(peer)
        if wait_s > 0:
            minutes = max(1, round(wait_s / 60))
            notice = (
                f"Too many requests from your address: try again in {minutes} minute(s), "
                "or call the helpdesk. What you typed is still here."
            )
            return _html(pages.request_form(submission, fields, {}, notice), 429)
        try:
            taken = await requests.submit(form, submission, peer)
        except InvalidArgument as refused:  # a rule of the ticket's own, past the form's
            notice = f"Your request could not be opened: {refused}. What you typed is still here."
            return _html(pages.request_form(submission, fields, {}, notice), 422)
        log.info("web form: ticket %d from %s", taken.ticket_id, peer)
        mailed = self._mails and "<" in form.requester
        return _html(pages.request_taken(taken.ticket_id, taken.again, mailed))

    async def _rating(self, request: web.Request) -> web.StreamResponse:
        _, satisfaction = self._ready()
        token = request.match_info["token"]
        try:
            asked = await satisfaction.asked(token)
        except NotFound as error:
            return _html(pages.message("Unknown link", str(error)), 404)
        if asked.rating is not None:
            said = f"Ticket #{asked.ticket_id} was rated {asked.rating}/5 already: thank you."
            return _html(pages.message("Thank you", said, good=True))
        if asked.expired:
            said = "This rating link has expired (links work for 30 days)."
            return _html(pages.message("Link expired", said), 410)
        return _html(pages.rating_form(token, asked.ticket_id, asked.title))

    async def _rate(self, request: web.Request) -> web.StreamResponse:
        _, satisfaction = self._ready()
        token = request.match_info["token"]
        fields = await self._fields(request)
        comment = fields.get("comment", "")
        try:
            rating = checked_rating(fields.get("rating", ""))
            rated = await satisfaction.answer(token, rating, comment, request.remote or "")
        except NotFound as error:
            return _html(pages.message("Unknown link", str(error)), 404)
        except Conflict as error:
            return _html(pages.message("Already answered", str(error)), 409)
        except InvalidArgument as error:
            try:
                asked = await satisfaction.asked(token)
            except NotFound as unknown:
                return _html(pages.message("Unknown link", str(unknown)), 404)
            form = pages.rating_form(token, asked.ticket_id, asked.title, str(error), comment)
            return _html(form, 422)
        said = f"Your rating of {rated.rating}/5 for ticket #{rated.ticket_id} is recorded."
        return _html(pages.message("Thank you", said, good=True))
