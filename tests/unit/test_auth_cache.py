"""The principal behind a token is cached briefly, and dropped as soon as users change."""

from __future__ import annotations

from sonde.server.api.auth import AuthInterceptor
from sonde.server.domain.roles import Principal, Role
from sonde.server.errors import SondeError


async def test_a_token_is_looked_up_once_until_users_change() -> None:
    lookups: list[str] = []
    generation = [0]

    async def authenticate(token: str) -> Principal:
        lookups.append(token)
        return Principal(user_id=1, name="ann", role=Role.L1)

    async def record(
        actor: str, action: str, error: SondeError, detail: dict[str, str], peer: str
    ) -> None:
        raise AssertionError("nothing is refused here")

    auth = AuthInterceptor(authenticate, record, generation=lambda: generation[0])
    first = await auth._principal_for("t1")
    again = await auth._principal_for("t1")
    assert first == again
    assert lookups == ["t1"]
    generation[0] += 1  # a user was added, disabled or changed role
    await auth._principal_for("t1")
    assert lookups == ["t1", "t1"]
