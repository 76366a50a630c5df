"""A TCP proxy on 127.0.0.1 that cuts a connection after N bytes from the server.

It forwards bytes both ways; on the first `cut_connections` connections, once `cut_after`
bytes have come from the server, it forwards no more and closes both sides at once: the
client sees its connection dropped mid-reply (for IMAP: in the middle of a FETCH literal).
Later connections are forwarded whole, so the same address serves the retry.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

_CHUNK = 16384


@dataclass
class CuttingProxy:
    server_port: int
    cut_after: int
    cut_connections: int = 1
    port: int = 0
    connections: int = 0
    cuts: int = 0
    _listener: socket.socket = field(default_factory=socket.socket)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                cut = self.connections <= self.cut_connections
            server = socket.create_connection(("127.0.0.1", self.server_port), timeout=10)
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(
                target=self._pipe,
                args=(server, client, self.cut_after if cut else None),
                daemon=True,
            ).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, cut_after: int | None) -> None:
        passed = 0
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                if cut_after is not None and passed + len(data) >= cut_after:
                    sink.sendall(data[: cut_after - passed])
                    with self._lock:
                        self.cuts += 1
                    break
                sink.sendall(data)
                passed += len(data)
        except OSError:
            pass
        for side in (source, sink):
            with suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)
            side.close()


@contextmanager
def cutting_proxy(
    server_port: int, cut_after: int, cut_connections: int = 1
) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(server_port, cut_after, cut_connections)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
