"""Enroll many simulated agents for real: one key pair and CSR each, Enroll over grpc.aio."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sonde.agent.enroll import build_csr, check_issued_certificate, generate_key
from sonde.enrollment_bundle import decode_bundle
from sonde.v1 import enrollment_pb2, enrollment_pb2_grpc

ENROLL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class EnrolledAgent:
    agent_id: str
    hostname: str
    key_pem: str
    certificate_pem: str
    # The Ed25519 keys its enrollment answer gave it to pin (hex of the 32 raw bytes).
    catalog_public_key: str = ""
    dispatch_public_key: str = ""


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


async def enroll_fleet(tokens: list[str], count: int, concurrency: int = 16) -> list[EnrolledAgent]:
    """Enroll `count` agents, `concurrency` calls in flight: agent n uses tokens[n * T // count]
    (a token holds at most MAX_USES uses, so a large fleet needs several, each with its share).
    """
    bundles = [decode_bundle(token) for token in tokens]
    bundle = bundles[0]
    ca_pem = x509.load_der_x509_certificate(bundle.ca_certificate_der).public_bytes(
        serialization.Encoding.PEM
    )
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    options = [("grpc.ssl_target_name_override", bundle.server_name)]
    slots = asyncio.Semaphore(concurrency)
    done: list[EnrolledAgent] = []
    started = time.monotonic()

    async with grpc.aio.secure_channel(bundle.console_address, credentials, options) as channel:
        stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)

        async def one(number: int) -> None:
            key = generate_key()
            hostname = f"bench-pc-{number:05d}"
            use = bundles[number * len(bundles) // count]
            request = enrollment_pb2.EnrollRequest(
                token_id=use.token_id, secret=use.secret, csr_der=build_csr(key),
                hostname=hostname, platform="linux",
            )  # fmt: skip
            async with slots:
                response = await stub.Enroll(request, timeout=ENROLL_TIMEOUT_S)
            certificate = check_issued_certificate(
                response.certificate_der, bundle.ca_certificate_der, key
            )
            private_pem = key.private_pem().decode()
            done.append(
                EnrolledAgent(
                    key.agent_id,
                    hostname,
                    private_pem,
                    _pem(certificate),
                    response.catalog_public_key.hex(),
                    response.dispatch_public_key.hex(),
                )
            )
            if len(done) % 25 == 0 or len(done) == count:
                rate = len(done) / (time.monotonic() - started)
                line = f"\renrolled {len(done):5d}/{count} ({rate:.0f}/s)"
                print(line, end="", file=sys.stderr, flush=True)

        await asyncio.gather(*(one(number) for number in range(count)))
    print(file=sys.stderr)
    return done
