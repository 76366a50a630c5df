"""Where a user-session script ran (script_runs.user_session): the logged-on user's session
the Windows agent started it in, as its result said.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 16:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("script_runs") as batch:
        batch.add_column(
            sa.Column("user_session", sa.String(200), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("script_runs") as batch:
        batch.drop_column("user_session")
