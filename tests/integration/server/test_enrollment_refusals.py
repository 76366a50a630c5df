"""Enroll as an adversary calls it, against a real server on 127.0.0.1 (SQLite and PostgreSQL):
bad certificate requests and a revoked key keep the token's last use, every refusal is
audited, and an address that keeps failing is refused for a while, as is one that keeps
presenting wrong API tokens to the console."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from sonde.server.api.peer_lockout import AUTH_FAILURES, ENROLL_FAILURES, WINDOW_S
from sonde.server.domain.enrollment_tokens import IssuedToken
from sonde.server.storage.tables import audit_log, enrollment_tokens
from sonde.v1 import console_pb2, enrollment_pb2
from sonde.wire_limits import RETRY_AFTER_MS_KEY
from tests.support.live_server import LiveServer, agent_csr, live_server


@pytest.fixture
async def live(db_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server", db_url) as running:
        yield running


_SHA256 = hashes.SHA256()


def _csr(
    key: CertificateIssuerPrivateKeyTypes,
    algorithm: hashes.SHA224 | hashes.SHA256 | None = _SHA256,
) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pc-042")])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def _tampered() -> bytes:
    """A well-formed request whose signature does not cover what it says."""
    good = agent_csr(ec.generate_private_key(ec.SECP256R1()))
    key = ec.generate_private_key(ec.SECP256R1())
    other = agent_csr(key)
    # The same subject length (an agent id): swap in another key's id, keep the signature.
    parsed = x509.load_der_x509_csr(good)
    name = parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    other_name = (
        x509.load_der_x509_csr(other).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    )
    assert isinstance(name, str)
    assert isinstance(other_name, str)
    return good.replace(name.encode(), other_name.encode())


BAD_REQUESTS: list[tuple[str, Callable[[], bytes], str]] = [
    ("not DER", lambda: b"MIIB this is not a request", "is not a DER PKCS#10 request"),
    ("empty", lambda: b"", "carries no certificate request"),
    ("too large", lambda: b"\x30" * 9000, "9,000 bytes; the limit is 8,192"),
    (
        "trailing bytes",
        lambda: agent_csr(ec.generate_private_key(ec.SECP256R1())) + b"\x00",
        "is not a DER PKCS#10 request",
    ),
    (
        "RSA key",
        lambda: _csr(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "must be ECDSA P-256, not RSA-2048",
    ),
    (
        "P-384",
        lambda: _csr(ec.generate_private_key(ec.SECP384R1())),
        "must be ECDSA P-256, not ECDSA secp384r1",
    ),
    (
        "secp256k1",
        lambda: _csr(ec.generate_private_key(ec.SECP256K1())),
        "must be ECDSA P-256, not ECDSA secp256k1",
    ),
    ("Ed25519", lambda: _csr(ed25519.Ed25519PrivateKey.generate(), None), "not an EdDSA key"),
    (
        "SHA-224",
        lambda: _csr(ec.generate_private_key(ec.SECP256R1()), hashes.SHA224()),
        "signed with ECDSA over SHA-256, -384 or -512",
    ),
    ("signature", _tampered, "signature does not verify"),
]


def _request(
    token: IssuedToken, csr_der: bytes, secret: bytes | None = None
) -> enrollment_pb2.EnrollRequest:
    return enrollment_pb2.EnrollRequest(
        token_id=token.token_id,
        secret=token.secret if secret is None else secret,
        csr_der=csr_der,
        hostname="pc-042",
        platform="linux",
    )


async def _enroll(
    live: LiveServer, channel: grpc.aio.Channel, request: enrollment_pb2.EnrollRequest
) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    try:
        await live.enrollment(channel).Enroll(request, timeout=10)
    except grpc.aio.AioRpcError as error:
        trailing = {key: str(value) for key, value in (error.trailing_metadata() or ())}
        return error.code(), error.details() or "", trailing
    return grpc.StatusCode.OK, "", {}


async def _uses_left(live: LiveServer, token: IssuedToken) -> int:
    return int(
        await live.db.read(
            lambda c: c.execute(
                select(enrollment_tokens.c.uses_left).where(
                    enrollment_tokens.c.id == token.token_id
                )
            ).scalar_one()
        )
    )


async def _audited(live: LiveServer, actor: str, action: str) -> list[str]:
    rows = await live.db.read(
        lambda c: c.execute(
            select(audit_log.c.result)
            .where(audit_log.c.actor == actor, audit_log.c.action == action)
            .order_by(audit_log.c.id)
        ).all()
    )
    return [row.result for row in rows]


async def test_a_refused_request_keeps_the_last_use_of_its_token(live: LiveServer) -> None:
    token = await live.token(uses=1)
    async with live.console_channel() as channel:
        for label, make, message in BAD_REQUESTS:
            code, details, _ = await _enroll(live, channel, _request(token, make()))
            assert (code, label) == (grpc.StatusCode.INVALID_ARGUMENT, label), details
            assert message in details, label
            assert await _uses_left(live, token) == 1, label
        # A key that was enrolled, then revoked, cannot come back, nor spend the use trying.
        revoked = await live.enroll("stolen-laptop")
        async with live.console_channel(live.admin_token) as admin:
            await live.console(admin).RevokeAgent(
                console_pb2.RevokeAgentRequest(agent=revoked.agent_id, reason="stolen"),
                timeout=10,
            )
        code, details, _ = await _enroll(live, channel, _request(token, agent_csr(revoked.key)))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "was revoked" in details
        assert await _uses_left(live, token) == 1
        # A token id no token could have is refused, and audited all the same.
        malformed = enrollment_pb2.EnrollRequest(token_id="../x", secret=b"s", csr_der=b"x")
        code, _, _ = await _enroll(live, channel, malformed)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        # The use is still there: a good request takes it, and then there is none.
        good = agent_csr(ec.generate_private_key(ec.SECP256R1()))
        assert (await _enroll(live, channel, _request(token, good)))[0] == grpc.StatusCode.OK
        code, details, _ = await _enroll(live, channel, _request(token, agent_csr(revoked.key)))
        assert (code, "no uses left" in details) == (grpc.StatusCode.UNAUTHENTICATED, True)
    rows = await _audited(live, f"enrollment-token:{token.token_id}", "agent.enroll")
    assert rows.count("ok") == 1
    refusals = [row for row in rows if row != "ok"]
    assert refusals[0] == (
        "refused: InvalidArgument: the certificate request is not a DER PKCS#10 request"
    )
    assert "refused: InvalidArgument: the agent key must be ECDSA P-256, not RSA-2048" in refusals
    # The refusals' rate: 10 rows a minute per token, address and kind of refusal.
    assert sum(row.startswith("refused: InvalidArgument") for row in refusals) == 10
    others = [row for row in refusals if not row.startswith("refused: InvalidArgument")]
    assert len(others) == 2
    assert others[0].startswith(f"refused: PermissionDenied: agent {revoked.agent_id} was revoked")
    assert others[1].startswith("refused: Unauthenticated: ")
    assert "no uses left" in others[1]
    assert await _audited(live, "anonymous", "agent.enroll") == [
        "refused: Unauthenticated: enrollment token is unknown or its secret is wrong"
    ]


async def test_a_thousand_failed_enrollments_from_one_address(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = await live.token(uses=5)
    wrong = b"\x00" * 32
    csr = agent_csr(ec.generate_private_key(ec.SECP256R1()))
    codes: list[grpc.StatusCode] = []
    hints: list[int] = []
    caplog.set_level(logging.WARNING, "sonde.server.api.peer_lockout")
    for _ in range(10):  # a new connection (a new port) every 100 calls: still one address
        async with live.console_channel() as channel:
            for _ in range(100):
                code, details, trailing = await _enroll(
                    live, channel, _request(token, csr, secret=wrong)
                )
                codes.append(code)
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert details.startswith("too many failed enrollments from 127.0.0.1")
                    hints.append(int(trailing[RETRY_AFTER_MS_KEY]))
    assert codes[:ENROLL_FAILURES] == [grpc.StatusCode.UNAUTHENTICATED] * ENROLL_FAILURES
    assert codes[ENROLL_FAILURES:] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 980
    assert all(0 < hint <= WINDOW_S * 1000 for hint in hints)
    assert hints == sorted(hints, reverse=True)  # the time left, counting down
    # While locked out, even a right secret with a good request is refused: nothing spent.
    async with live.console_channel() as channel:
        good = agent_csr(ec.generate_private_key(ec.SECP256R1()))
        code, _, trailing = await _enroll(live, channel, _request(token, good))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert RETRY_AFTER_MS_KEY in trailing
    assert await _uses_left(live, token) == 5
    # Counted and audited at a bounded rate: a few rows for 1,001 refusals, one log line.
    refusals = await _audited(live, f"enrollment-token:{token.token_id}", "agent.enroll")
    assert 10 < len(refusals) <= 20
    assert any("ResourceExhausted: too many failed enrollments" in row for row in refusals)
    assert [r.getMessage() for r in caplog.records] == [
        f"{ENROLL_FAILURES} failed enrollments from 127.0.0.1 within 300 s: "
        "refused until that window ends"
    ]


async def test_wrong_api_tokens_from_one_address_lock_it_out_of_the_console(
    live: LiveServer,
) -> None:
    forged = "sonde_0123456789abcdef_" + "A" * 43
    refused: list[grpc.aio.AioRpcError] = []
    async with live.console_channel(forged) as channel:
        for _ in range(AUTH_FAILURES + 10):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await live.console(channel).WhoAmI(console_pb2.WhoAmIRequest(), timeout=10)
            refused.append(caught.value)
    codes = [error.code() for error in refused]
    last = refused[-1]
    assert (
        codes
        == [grpc.StatusCode.UNAUTHENTICATED] * AUTH_FAILURES
        + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 10
    )
    assert "too many failed authentications from 127.0.0.1; retry in" in (last.details() or "")
    hint = dict(last.trailing_metadata() or ())[RETRY_AFTER_MS_KEY]
    assert 0 < int(str(hint)) <= WINDOW_S * 1000
    # The address is locked out whatever token it presents, until the window ends...
    async with live.console_channel(live.admin_token) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as locked:
            await live.console(channel).WhoAmI(console_pb2.WhoAmIRequest(), timeout=10)
    assert locked.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # ...but enrollment keeps its own count.
    await live.enroll()
    rows = await _audited(live, "anonymous", "auth.refused")
    assert 10 < len(rows) <= 20
