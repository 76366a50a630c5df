"""EnrollmentService.Enroll: the one call that needs no client certificate.

The registry spends one use of the enrollment token, has the agent's own certificate request
signed, and records the agent with its audit row, all in one unit of work (so a refused
enrollment spends no use). The agent id is derived from the public key in the request.
"""

from __future__ import annotations

import logging

import grpc
from cryptography.hazmat.primitives import serialization

from sonde.server.api.errors import translate_errors
from sonde.server.domain.agents import AgentCertificate, AgentRegistry
from sonde.server.domain.clock import utc_now
from sonde.server.errors import InvalidArgument
from sonde.server.pki import CertificateAuthority, fingerprint
from sonde.v1 import enrollment_pb2, enrollment_pb2_grpc

log = logging.getLogger(__name__)

MAX_CSR_BYTES = 8192
MAX_SECRET_BYTES = 64


class EnrollmentServicer(enrollment_pb2_grpc.EnrollmentServiceServicer):
    def __init__(
        self,
        *,
        authority: CertificateAuthority,
        agents: AgentRegistry,
        agent_address: str,
        server_name: str,
    ) -> None:
        self._authority = authority
        self._agents = agents
        self._agent_address = agent_address
        self._server_name = server_name

    @translate_errors
    async def Enroll(
        self,
        request: enrollment_pb2.EnrollRequest,
        context: grpc.aio.ServicerContext[
            enrollment_pb2.EnrollRequest, enrollment_pb2.EnrollResponse
        ],
    ) -> enrollment_pb2.EnrollResponse:
        if not request.token_id or len(request.token_id) > 64 or not request.secret:
            raise InvalidArgument("an enrollment needs the token id and its secret")
        if len(request.secret) > MAX_SECRET_BYTES or len(request.csr_der) > MAX_CSR_BYTES:
            raise InvalidArgument("the enrollment request is larger than any valid one")

        def sign() -> AgentCertificate:
            agent_id, certificate = self._authority.sign_agent_request(request.csr_der)
            der = certificate.public_bytes(serialization.Encoding.DER)
            return AgentCertificate(agent_id, fingerprint(certificate), der)

        # The registry cleans and bounds the host name and platform the agent reports.
        agent, certificate = await self._agents.enroll(
            request.token_id,
            request.secret,
            hostname=request.hostname,
            platform=request.platform,
            sign=sign,
            at=utc_now(),
            peer=context.peer(),
        )
        log.info("enrolled agent %s (%s)", agent.hostname, agent.id)
        return enrollment_pb2.EnrollResponse(
            agent_id=agent.id,
            certificate_der=certificate.der,
            ca_certificate_der=self._authority.certificate_der,
            agent_address=self._agent_address,
            server_name=self._server_name,
        )
