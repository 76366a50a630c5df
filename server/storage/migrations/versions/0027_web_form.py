"""The self-service web form and satisfaction: each form submission's one-time id (a resent
form opens no second ticket) and the rating asked of a ticket's requester on resolve.

Revision ID: 0027
Revises: 0024
Create Date: 2026-12-03 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "web_submissions",
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("ticket_id", _ID, sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("peer", sa.String(64), nullable=False, server_default=""),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "satisfaction",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", _ID, sa.ForeignKey("tickets.id"), nullable=False),
        # SHA-256 of the link's secret: the database alone cannot answer for a requester.
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rating", sa.SmallInteger()),  # 1 to 5; NULL: not answered
        sa.Column("comment", sa.Text(), nullable=False, server_default=""),
        sa.Column("answered_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_satisfaction_ticket_id", "satisfaction", ["ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_satisfaction_ticket_id", table_name="satisfaction")
    op.drop_table("satisfaction")
    op.drop_table("web_submissions")
