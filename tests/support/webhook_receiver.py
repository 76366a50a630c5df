"""A real HTTPS webhook receiver on 127.0.0.1 (port 0, or the port it had before it went down),
in a thread, with a certificate from a CA the test makes. It checks each POST's signature with
the secret it is given and keeps the events that verify, in the order they came.

`mode` says how it answers: "ok" (200), "unavailable" (503), "slow" (nothing for
`slow_s`, then 200), "huge" (200 and an endless body), "huge_headers" (a 64 KiB header line),
"redirect" (302 to `redirect_to`).
"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonde.server.webhooks.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)
from tests.support.listener_certificates import ListenerTls, listener_tls


@dataclass(frozen=True)
class Received:
    event_id: str
    kind: str
    document: dict[str, Any]
    signatures: int = 1  # the v1= values its Sonde-Signature carried (2 during a rotation)


@dataclass
class ReceiverState:
    secret: bytes = b""
    mode: str = "ok"
    slow_s: float = 5.0
    redirect_to: str = ""
    events: list[Received] = field(default_factory=list)  # 2xx answered, signature verified
    attempts: list[str] = field(default_factory=list)  # every POST's event id, any answer
    unverified: int = 0  # POSTs whose signature did not verify (answered 401)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        state = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        event_id = self.headers.get(EVENT_ID_HEADER, "")
        with state.lock:
            state.attempts.append(event_id)
            mode = state.mode
        if mode == "unavailable":
            self._answer(503, b"down for maintenance")
            return
        if mode == "slow":
            time.sleep(state.slow_s)
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", state.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "huge_headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * 65536 + b"\r\n\r\n")
            return
        signed = verify(
            state.secret,
            self.headers.get(TIMESTAMP_HEADER, ""),
            self.headers.get(SIGNATURE_HEADER, ""),
            body,
            now=time.time(),
        )
        if not signed:
            with state.lock:
                state.unverified += 1
            self._answer(401, b"bad signature")
            return
        document = json.loads(body)
        with state.lock:
            signatures = self.headers.get(SIGNATURE_HEADER, "").count("v1=")
            state.events.append(Received(event_id, document["kind"], document, signatures))
        if mode == "huge":
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"x" * 65536)
            except OSError:
                return
        self._answer(200, b"thanks")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: ReceiverState


class WebhookReceiver:
    def __init__(self, folder: Path, path: str = "/hooks/sonde") -> None:
        self.tls: ListenerTls = listener_tls(folder, ["127.0.0.1"], label="webhook")
        self.state = ReceiverState()
        self.path = path
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{self.path}"

    @property
    def ca_pem(self) -> str:
        return self.tls.ca_file.read_text()

    def start(self) -> None:
        """Listen (again on the same port once it has one)."""
        server = _Server(("127.0.0.1", self.port), _Handler, bind_and_activate=True)
        server.socket = self.tls.context.wrap_socket(server.socket, server_side=True)
        server.state = self.state
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Go down: the port is closed until start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def kinds(self) -> list[str]:
        with self.state.lock:
            return [event.kind for event in self.state.events]

    def event_ids(self) -> list[str]:
        with self.state.lock:
            return [event.event_id for event in self.state.events]

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
