"""A TCP proxy on 127.0.0.1 that lets a TLS call reach the server and drops its reply.

It forwards bytes both ways, reading the server's side as TLS records (a 5-byte header: type,
version, length). The handshake passes, and so do the small records after it (session
tickets, HTTP/2 settings and acknowledgements); the first record after the handshake of at
least `min_reply_bytes` is the reply to the call (an enrollment's reply carries two
certificates): it is not forwarded, and both connections are closed at once, so the client
sees its connection cut with no answer while the server has done the work. After
`replies_to_drop` such replies, it forwards everything, so the same address serves a retry.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

_HEADER = 5
_CHUNK = 65536


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    client_spoke_after_server: bool = False  # its handshake's second flight has begun
    server_spoke: bool = False
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        for side in (self.client, self.server):
            with suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)
            side.close()


@dataclass
class ReplyDropper:
    target: tuple[str, int]
    replies_to_drop: int = 1
    min_reply_bytes: int = 700
    replies_dropped: int = 0
    _listener: socket.socket = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _links: list[_Link] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))

    @property
    def address(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"{host}:{port}"

    def serve(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for link in self._links:
                if not link.closed:
                    link.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.target)
            link = _Link(client, server)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._from_client, args=(link,), daemon=True).start()
            threading.Thread(target=self._from_server, args=(link,), daemon=True).start()

    def _from_client(self, link: _Link) -> None:
        try:
            while data := link.client.recv(_CHUNK):
                if link.server_spoke:
                    link.client_spoke_after_server = True
                link.server.sendall(data)
        except OSError:
            pass
        self._end(link)

    def _from_server(self, link: _Link) -> None:
        pending = b""
        try:
            while data := link.server.recv(_CHUNK):
                pending += data
                while len(pending) >= _HEADER:
                    size = _HEADER + int.from_bytes(pending[3:5], "big")
                    if len(pending) < size:
                        break
                    record, pending = pending[:size], pending[size:]
                    if self._is_reply_to_drop(link, record):
                        self._end(link)
                        return
                    link.client.sendall(record)
                    link.server_spoke = True
        except OSError:
            pass
        self._end(link)

    def _is_reply_to_drop(self, link: _Link, record: bytes) -> bool:
        if not link.client_spoke_after_server or len(record) - _HEADER < self.min_reply_bytes:
            return False
        with self._lock:
            if self.replies_dropped >= self.replies_to_drop:
                return False
            self.replies_dropped += 1
            return True

    def _end(self, link: _Link) -> None:
        with self._lock:
            if not link.closed:
                link.close()


@contextmanager
def reply_dropper(target: str, *, replies_to_drop: int = 1) -> Iterator[ReplyDropper]:
    """A running proxy to `target` (HOST:PORT) that drops the first `replies_to_drop`
    replies; closed, with its connections, on exit."""
    host, _, port = target.rpartition(":")
    dropper = ReplyDropper((host, int(port)), replies_to_drop=replies_to_drop)
    dropper.serve()
    try:
        yield dropper
    finally:
        dropper.close()
