"""The connect floor: N mTLS streams opened at once on a bare grpc.aio echo server.

No Sonde code on either side: a server process with one stream-stream echo method
(`require_client_auth`, ECDSA P-256 certificates as Sonde issues them, the listeners'
options from server/api/app.py) and W client processes, each client with its own key,
certificate and TCP connection (a local subchannel pool), writing one message and reading
its echo. It prints the wall time until all N are open, the open time per stream
(p50/p99) and the CPU seconds both sides spent: what the machine's cores can do before any
servicer runs, to compare with `bench.fleet --ramp 0`. `--in-flight K` opens at most K at a
time per client process (1: the CPU of one handshake, unloaded); `--insecure` drops TLS;
`--rsa` gives the server an RSA-2048 key instead.

    .venv/bin/python -m bench.handshake_floor [--streams 5000] [--workers 4] [--in-flight 0]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from bench import children
from bench.procfs import cpu_seconds
from bench.stats import Row, format_table
from sonde.server.api.app import COMMON_OPTIONS

SERVER_NAME = "floor.test"
METHOD = "/floor.Echo/Stream"
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _certificate(key: PrivateKey, name: str, ca_key: ec.EllipticCurvePrivateKey) -> str:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "floor CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=key is ca_key, path_length=None), critical=True)
    )
    if name == SERVER_NAME:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


async def serve(spec: dict[str, object]) -> None:
    async def echo(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        async for message in requests:
            yield message

    handler = grpc.method_handlers_generic_handler(
        "floor.Echo", {"Stream": grpc.stream_stream_rpc_method_handler(echo)}
    )
    server = grpc.aio.server(options=COMMON_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    if spec["insecure"]:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        key, chain = (str(part).encode() for part in spec["server"])  # type: ignore[attr-defined]
        credentials = grpc.ssl_server_credentials(
            [(key, chain)], root_certificates=str(spec["ca"]).encode(), require_client_auth=True
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def _write_result(out: Path, result: dict[str, object]) -> None:
    """Whole or not at all: the parent reads the file as soon as it exists."""
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(result))
    partial.replace(out)


async def connect_all(spec: dict[str, object], port: int, out: Path) -> None:
    ca = str(spec["ca"]).encode()
    in_flight = int(str(spec["in_flight"]))
    slots = asyncio.Semaphore(in_flight) if in_flight else None
    opened: list[float] = []
    failures: list[str] = []
    channels: list[grpc.aio.Channel] = []
    calls: list[grpc.aio.StreamStreamCall[bytes, bytes]] = []
    options = [
        ("grpc.ssl_target_name_override", SERVER_NAME),
        ("grpc.use_local_subchannel_pool", 1),
    ]

    async def one(key: str, chain: str) -> None:
        started = time.monotonic()
        if spec["insecure"]:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        else:
            credentials = grpc.ssl_channel_credentials(ca, key.encode(), chain.encode())
            channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options)
        channels.append(channel)
        call: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream(METHOD)()
        calls.append(call)
        await call.write(b"hello")
        await asyncio.wait_for(call.read(), 120)
        opened.append(time.monotonic() - started)

    async def guarded(key: str, chain: str) -> None:
        try:
            if slots is None:
                await one(key, chain)
            else:
                async with slots:
                    await one(key, chain)
        except (grpc.aio.AioRpcError, TimeoutError) as error:
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "timeout"
            failures.append(code)

    clients = spec["clients"]
    assert isinstance(clients, list)
    await asyncio.gather(*(guarded(key, chain) for key, chain in clients))
    _write_result(out, {"opened": opened, "failures": failures})
    await asyncio.sleep(2)  # all open at once for a moment, then close
    for channel in channels:
        await channel.close()


def run(root: Path, args: argparse.Namespace) -> list[Row]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(ca_key, "floor CA", ca_key)
    server_key: PrivateKey = (
        rsa.generate_private_key(65537, 2048)
        if args.rsa
        else ec.generate_private_key(ec.SECP256R1())
    )
    clients = []
    for n in range(args.streams):
        key = ec.generate_private_key(ec.SECP256R1())
        clients.append((_pem(key), _certificate(key, f"agent-{n}", ca_key)))
    common = {"ca": ca, "insecure": args.insecure, "in_flight": args.in_flight}
    server_spec = root / "server.json"
    server_spec.write_text(
        json.dumps(
            {**common, "server": [_pem(server_key), _certificate(server_key, SERVER_NAME, ca_key)]}
        )
    )
    me = [sys.executable, "-m", "bench.handshake_floor"]
    server_log = root / "server.log"
    server = children.start([*me, "--role", "server", "--spec", str(server_spec)], server_log)
    deadline = time.monotonic() + 30
    while not server_log.read_text().strip().isdigit():
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError(f"the echo server did not start:\n{server_log.read_text()}")
        time.sleep(0.05)
    port = int(server_log.read_text())
    server_before = cpu_seconds(server.pid)
    started = time.monotonic()
    workers = []
    for n in range(args.workers):
        spec = root / f"client-{n}.json"
        spec.write_text(json.dumps({**common, "clients": clients[n :: args.workers]}))
        argv = [*me, "--role", "client", "--spec", str(spec), "--port", str(port),
                "--out", str(root / f"client-{n}.out")]  # fmt: skip
        workers.append(children.start(argv, root / f"client-{n}.log"))
    outs = [root / f"client-{n}.out" for n in range(args.workers)]
    worker_cpu = {worker.pid: 0.0 for worker in workers}
    while not all(out.exists() for out in outs):
        for worker in workers:
            if worker.poll() is None:
                worker_cpu[worker.pid] = cpu_seconds(worker.pid)
        time.sleep(0.05)
    wall = time.monotonic() - started
    server_cpu = cpu_seconds(server.pid) - server_before
    for worker in workers:
        if worker.poll() is None:
            worker_cpu[worker.pid] = cpu_seconds(worker.pid)
    opened: list[float] = []
    failures: list[str] = []
    for out in outs:
        result = json.loads(out.read_text())
        opened += result["opened"]
        failures += result["failures"]
    for worker in workers:
        worker.wait(30)
    children.stop(server)
    generator_cpu = sum(worker_cpu.values())
    kind = "insecure" if args.insecure else ("mTLS, RSA-2048 server" if args.rsa else "mTLS, P-256")
    at_once = f"{args.in_flight} in flight per worker" if args.in_flight else "all at once"
    ok = max(1, len(opened))
    return [
        Row(f"streams open ({kind}, {at_once}, {args.workers} workers)", args.streams, len(opened),
            target=f"{args.streams}"),
        Row("failed (any status)", args.streams, len(failures)),
        Row("wall s until all open", 1, wall),
        Row.of("open time per stream s", opened),
        Row("streams opened per second", 1, len(opened) / wall),
        Row("server CPU ms per stream", ok, server_cpu * 1000 / ok),
        Row("generator CPU ms per stream (interpreter start included)", ok,
            generator_cpu * 1000 / ok),
        Row(f"least wall s for that CPU on {os.cpu_count()} cores", 1,
            (server_cpu + generator_cpu) / (os.cpu_count() or 1)),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=0, help="per worker; 0: all at once")
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--rsa", action="store_true")
    parser.add_argument("--role", choices=["server", "client"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role is not None:
        spec = json.loads(args.spec.read_text())
        if args.role == "server":
            asyncio.run(serve(spec))
        else:
            asyncio.run(connect_all(spec, args.port, args.out))
        return 0
    children.install_cleanup()
    with tempfile.TemporaryDirectory(prefix="sonde-bench-floor-") as tmp:
        try:
            rows = run(Path(tmp), args)
        finally:
            children.stop_all()
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
