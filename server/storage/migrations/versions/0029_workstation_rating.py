"""Satisfaction asked on the workstation too: each question says where it was asked (`mail`,
a link with a secret, or `workstation`, answered with `sonde-agent rate` by the ticket's local
user, with no link and so no secret).

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("satisfaction") as batch:
        batch.add_column(
            sa.Column("asked_on", sa.String(16), nullable=False, server_default="mail")
        )
        batch.alter_column("token_sha256", existing_type=sa.String(64), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM satisfaction WHERE token_sha256 IS NULL")
    with op.batch_alter_table("satisfaction") as batch:
        batch.alter_column("token_sha256", existing_type=sa.String(64), nullable=False)
        batch.drop_column("asked_on")
