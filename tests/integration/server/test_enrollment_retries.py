"""Enroll retried against a real server on 127.0.0.1 (SQLite and PostgreSQL): the same key with
the same one-use token is answered again with a working certificate for the same agent, and no
use is spent; once the agent has opened a session, the same request is an enrollment like any
other and the used-up token refuses it, as it refuses a new key all along."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from sonde.server.storage.tables import agents, enrollment_tokens
from sonde.v1 import agent_pb2, agent_pb2_grpc, enrollment_pb2
from tests.support.live_server import HandDrivenAgent, LiveServer, agent_csr, hello, live_server


@pytest.fixture
async def live(db_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server", db_url) as running:
        yield running


async def _enroll(
    live: LiveServer, request: enrollment_pb2.EnrollRequest
) -> enrollment_pb2.EnrollResponse | grpc.aio.AioRpcError:
    async with live.console_channel() as channel:
        try:
            reply: enrollment_pb2.EnrollResponse = await live.enrollment(channel).Enroll(
                request, timeout=10
            )
        except grpc.aio.AioRpcError as error:
            return error
        return reply


def _agent_with(
    live: LiveServer, key: ec.EllipticCurvePrivateKey, reply: enrollment_pb2.EnrollResponse
) -> HandDrivenAgent:
    certificate = x509.load_der_x509_certificate(reply.certificate_der)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=live.ca_pem,
        private_key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate_chain=certificate.public_bytes(serialization.Encoding.PEM),
    )
    return HandDrivenAgent(reply.agent_id, key, credentials, live.server.agent_address)


async def _has_been_seen(live: LiveServer, agent_id: str) -> bool:
    statement = select(agents.c.last_seen_at).where(agents.c.id == agent_id)
    return await live.db.read(lambda c: c.execute(statement).scalar_one()) is not None


async def test_a_retried_enrollment_is_answered_again_until_the_agent_connects(
    live: LiveServer,
) -> None:
    token = await live.token(uses=1)
    key = ec.generate_private_key(ec.SECP256R1())
    request = enrollment_pb2.EnrollRequest(
        token_id=token.token_id,
        secret=token.secret,
        csr_der=agent_csr(key),
        hostname="pc-042",
        platform="linux",
    )
    first = await _enroll(live, request)
    retried = await _enroll(live, request)
    assert isinstance(first, enrollment_pb2.EnrollResponse), first
    assert isinstance(retried, enrollment_pb2.EnrollResponse), retried
    assert retried.agent_id == first.agent_id
    assert retried.certificate_der != first.certificate_der  # signed anew
    uses = select(enrollment_tokens.c.uses_left).where(enrollment_tokens.c.id == token.token_id)
    assert await live.db.read(lambda c: c.execute(uses).scalar_one()) == 0
    assert await live.db.read(lambda c: c.execute(select(agents.c.id)).scalars().all()) == [
        first.agent_id
    ]

    # A new key cannot ride on the token's answered use.
    stranger = enrollment_pb2.EnrollRequest()
    stranger.CopyFrom(request)
    stranger.csr_der = agent_csr(ec.generate_private_key(ec.SECP256R1()))
    refused = await _enroll(live, stranger)
    assert isinstance(refused, grpc.aio.AioRpcError)
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "has no uses left" in (refused.details() or "")

    # The retry's certificate opens a session; from then on the agent has its certificate.
    agent = _agent_with(live, key, retried)
    async with agent.channel() as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Session()
        await call.write(hello("pc-042"))
        welcome = await asyncio.wait_for(call.read(), 20)
        assert isinstance(welcome, agent_pb2.ServerMessage), welcome
        assert welcome.WhichOneof("kind") == "welcome"
        deadline = time.monotonic() + 20
        while not await _has_been_seen(live, agent.agent_id):
            assert time.monotonic() < deadline, "the session was never recorded"
            await asyncio.sleep(0.05)
        await call.done_writing()

    again = await _enroll(live, request)
    assert isinstance(again, grpc.aio.AioRpcError)
    assert again.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "has no uses left" in (again.details() or "")
