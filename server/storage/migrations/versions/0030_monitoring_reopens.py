"""A monitoring finding that comes back soon reopens its ticket: each (machine, check) row
stays once its ticket is freed, with when (`cleared_at`; NULL while its ticket is open), so
that the finding's return within the reopen window finds the ticket it had.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-03 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("monitoring_findings") as batch:
        batch.add_column(sa.Column("cleared_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.execute("DELETE FROM monitoring_findings WHERE cleared_at IS NOT NULL")
    with op.batch_alter_table("monitoring_findings") as batch:
        batch.drop_column("cleared_at")
