"""Issues enrollment strings: a token's id and secret plus everything an agent needs to trust us."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sonde.enrollment_bundle import encode_bundle
from sonde.server.domain.enrollment_tokens import EnrollmentTokens
from sonde.server.domain.roles import Principal
from sonde.server.services import IssuedEnrollment
from sonde.v1 import enrollment_pb2


class BundleIssuer:
    """Implements server.services.EnrollmentIssuer once the server knows its addresses.

    `agent_addresses` are the agent listeners of every replica, in the order agents try
    them; when empty, strings carry the one agent address given to set_addresses.
    """

    def __init__(
        self,
        ca_certificate_der: bytes,
        server_name: str,
        agent_addresses: Sequence[str] = (),
    ) -> None:
        self._ca_certificate_der = ca_certificate_der
        self._server_name = server_name
        self._agent_addresses = list(agent_addresses)
        self._console_address = ""
        self._agent_address = ""
        self._tokens: EnrollmentTokens | None = None

    def set_tokens(self, tokens: EnrollmentTokens) -> None:
        self._tokens = tokens

    def set_addresses(self, console_address: str, agent_address: str) -> None:
        self._console_address = console_address
        self._agent_address = agent_address

    async def issue(self, actor: Principal, *, uses: int, ttl: dt.timedelta) -> IssuedEnrollment:
        if self._tokens is None or not self._console_address:
            raise RuntimeError("the enrollment issuer is used before the server started")
        token = await self._tokens.create(actor, uses=uses, ttl=ttl)
        agent_addresses = self._agent_addresses or [self._agent_address]
        bundle = enrollment_pb2.EnrollmentBundle(
            console_address=self._console_address,
            agent_address=agent_addresses[0],  # what agents before the list read
            agent_addresses=agent_addresses,
            ca_certificate_der=self._ca_certificate_der,
            token_id=token.token_id,
            secret=token.secret,
            server_name=self._server_name,
        )
        return IssuedEnrollment(
            enrollment=encode_bundle(bundle),
            token_id=token.token_id,
            expires_at=token.expires_at,
            uses=token.uses,
        )
