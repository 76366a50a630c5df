"""EnrollmentService.Enroll: the one call that needs no client certificate.

The registry checks the agent's certificate request, then the token, then the agent's
standing, has the request signed, takes one use of the token and records the agent with its
audit row, all in one unit of work (so a refused enrollment spends no use). The agent id is
derived from the public key in the request. An address with too many failed enrollments is
refused for a while before any of that (server/api/peer_lockout.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.catalog.bundle import raw_public_key
from sonde.server.agent_requests import check_agent_request
from sonde.server.api.errors import translate_errors
from sonde.server.api.peer_lockout import ENROLL_FAILURES, PeerLockout, peer_address
from sonde.server.domain.agents import AgentCertificate, AgentRegistry
from sonde.server.domain.clock import utc_now
from sonde.server.errors import SondeError
from sonde.server.pki import CertificateAuthority, fingerprint
from sonde.v1 import enrollment_pb2, enrollment_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentKeyRequest:
    """An agent's certificate request (DER), checked and signed by the Sonde CA."""

    authority: CertificateAuthority
    csr_der: bytes

    def checked_agent_id(self) -> str:
        return check_agent_request(self.csr_der)

    def sign(self) -> AgentCertificate:
        agent_id, certificate = self.authority.sign_agent_request(self.csr_der)
        der = certificate.public_bytes(serialization.Encoding.DER)
        return AgentCertificate(agent_id, fingerprint(certificate), der)


class EnrollmentServicer(enrollment_pb2_grpc.EnrollmentServiceServicer):
    def __init__(
        self,
        *,
        authority: CertificateAuthority,
        agents: AgentRegistry,
        agent_address: str,
        server_name: str,
        lockout: PeerLockout | None = None,
        catalog_public_key: ed25519.Ed25519PublicKey | None = None,
        dispatch_public_key: ed25519.Ed25519PublicKey | None = None,
    ) -> None:
        self._authority = authority
        # The agent pins it: it runs only scripts this key signed.
        self._catalog_key = (
            raw_public_key(catalog_public_key) if catalog_public_key is not None else b""
        )
        # The agent pins it too: it runs only run orders this key signed.
        self._dispatch_key = (
            raw_public_key(dispatch_public_key) if dispatch_public_key is not None else b""
        )
        self._agents = agents
        self._agent_address = agent_address
        self._server_name = server_name
        self._lockout = lockout or PeerLockout("failed enrollments", max_failures=ENROLL_FAILURES)

    @translate_errors
    async def Enroll(
        self,
        request: enrollment_pb2.EnrollRequest,
        context: grpc.aio.ServicerContext[
            enrollment_pb2.EnrollRequest, enrollment_pb2.EnrollResponse
        ],
    ) -> enrollment_pb2.EnrollResponse:
        peer = context.peer()
        locked = self._lockout.refusal(peer)
        if locked is not None:
            # Keyed by the address, not the connection: the refusals' rate bounds its rows.
            await self._agents.refuse_enrollment(request.token_id, locked, peer=peer_address(peer))
            raise locked
        try:
            # The registry cleans and bounds the host name and platform the agent reports.
            agent, certificate = await self._agents.enroll(
                request.token_id,
                request.secret,
                hostname=request.hostname,
                platform=request.platform,
                request=AgentKeyRequest(self._authority, request.csr_der),
                at=utc_now(),
                peer=peer,
            )
        except SondeError:
            self._lockout.failed(peer)
            raise
        log.info("enrolled agent %s (%s)", agent.hostname, agent.id)
        return enrollment_pb2.EnrollResponse(
            agent_id=agent.id,
            certificate_der=certificate.der,
            ca_certificate_der=self._authority.certificate_der,
            agent_address=self._agent_address,
            server_name=self._server_name,
            catalog_public_key=self._catalog_key,
            dispatch_public_key=self._dispatch_key,
        )
