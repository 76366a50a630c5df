"""A real SondeServer in this process: both listeners on 127.0.0.1:0 (console TLS, agents
mutual TLS), on the database URL a test gives (SQLite or PostgreSQL), and the clients a
hand-driven agent or technician needs. In-process so that a test can read the server's log
records (caplog) and its database directly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sonde.identity import agent_id_from_public_key
from sonde.server import pki
from sonde.server.api.app import RunOptions, SondeServer
from sonde.server.audit_key import ensure_audit_key
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.enrollment_tokens import EnrollmentTokens, IssuedToken
from sonde.server.domain.roles import Role
from sonde.server.domain.users import Users
from sonde.server.settings import DataDir
from sonde.server.storage.db import Database
from sonde.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    console_pb2_grpc,
    enrollment_pb2,
    enrollment_pb2_grpc,
)
from tests.unit.domain.builders import SETUP_ADMIN

SERVER_NAME = "localhost"
_HOUR = timedelta(hours=1)
_NAME_OVERRIDE = (("grpc.ssl_target_name_override", SERVER_NAME),)
SessionCall = grpc.aio.StreamStreamCall[agent_pb2.AgentMessage, agent_pb2.ServerMessage]


def agent_csr(key: ec.EllipticCurvePrivateKey) -> bytes:
    """What `sonde-agent enroll` sends: CN = the key's agent id, signed by the key."""
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, agent_id_from_public_key(key.public_key()))]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


@dataclass
class HandDrivenAgent:
    """An enrolled key and certificate; opens raw sessions on the agent listener."""

    agent_id: str
    key: ec.EllipticCurvePrivateKey
    credentials: grpc.ChannelCredentials
    address: str

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(self.address, self.credentials, options=_NAME_OVERRIDE)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[SessionCall]:
        """A raw session past its Hello and the server's Welcome; closed for writing after."""
        async with self.channel() as channel:
            call = agent_pb2_grpc.AgentServiceStub(channel).Session()
            await call.write(hello())
            first = await asyncio.wait_for(call.read(), 20)
            assert isinstance(first, agent_pb2.ServerMessage)
            assert first.WhichOneof("kind") == "welcome", first
            yield call
            await call.done_writing()


@dataclass
class LiveServer:
    server: SondeServer
    db: Database  # the test's own connection to the server's database
    ca_pem: bytes
    admin_token: str
    writes: AuditedWrites  # the test's own audited writes, keyed as the server's are

    def console_channel(self, token: str | None = None) -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(self.ca_pem)
        if token:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(token)
            )
        return grpc.aio.secure_channel(
            self.server.console_address, credentials, options=_NAME_OVERRIDE
        )

    def console(self, channel: grpc.aio.Channel) -> console_pb2_grpc.ConsoleServiceAsyncStub:
        return console_pb2_grpc.ConsoleServiceStub(channel)

    def enrollment(
        self, channel: grpc.aio.Channel
    ) -> enrollment_pb2_grpc.EnrollmentServiceAsyncStub:
        return enrollment_pb2_grpc.EnrollmentServiceStub(channel)

    async def token(self, uses: int = 1) -> IssuedToken:
        tokens = EnrollmentTokens(self.db, writes=self.writes)
        return await tokens.create(SETUP_ADMIN, uses=uses, ttl=_HOUR)

    async def enroll(self, hostname: str = "hand-driven") -> HandDrivenAgent:
        """Enroll a key made here through the real Enroll call."""
        token = await self.token()
        key = ec.generate_private_key(ec.SECP256R1())
        async with self.console_channel() as channel:
            reply = await self.enrollment(channel).Enroll(
                enrollment_pb2.EnrollRequest(
                    token_id=token.token_id,
                    secret=token.secret,
                    csr_der=agent_csr(key),
                    hostname=hostname,
                    platform="linux",
                ),
                timeout=10,
            )
        certificate = x509.load_der_x509_certificate(reply.certificate_der)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            certificate_chain=certificate.public_bytes(serialization.Encoding.PEM),
        )
        return HandDrivenAgent(reply.agent_id, key, credentials, self.server.agent_address)


@asynccontextmanager
async def live_server(
    root: Path,
    database_url: str,
    *,
    wheelhouse: Path | None = None,
    msi: Path | None = None,
    package_address: str = "",
) -> AsyncIterator[LiveServer]:
    """A started SondeServer over `database_url` (migrated), its pki under `root`; `sonde
    deploy` installs from `wheelhouse` and `msi` (None: refused), Windows hosts fetching the
    MSI from a package listener on `package_address` ("": none, it is streamed)."""
    data = DataDir(root)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki.initialise(data.pki, [])
    audit_key, _ = ensure_audit_key(data.pki.root)  # as `sonde-server init` makes it
    db = await Database.open(database_url)
    writes = AuditedWrites(db, key=audit_key)
    try:
        _, admin_token = await Users(db, writes=writes).add(SETUP_ADMIN, "admin", Role.ADMIN)
        server = SondeServer(
            RunOptions(
                data=data,
                console_address="127.0.0.1:0",
                agent_address="127.0.0.1:0",
                database_url=database_url,
                heartbeat_interval_s=30,
                server_name=SERVER_NAME,
                wheelhouse=wheelhouse,
                msi=msi,
                package_address=package_address,
            )
        )
        await server.start()
        try:
            ca_pem = data.pki.ca_certificate.read_bytes()
            yield LiveServer(server, db, ca_pem, admin_token, writes)
        finally:
            await server.stop(grace_s=0)
    finally:
        await db.close()


def hello(hostname: str = "hand-driven") -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(hello=agent_pb2.Hello(hostname=hostname, platform="linux"))
