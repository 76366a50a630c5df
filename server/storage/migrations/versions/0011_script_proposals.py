"""Proposed scripts and versions: the bytes as proposed, their review, never sent to an agent.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "script_proposals",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("script_id", sa.String(64), nullable=False),
        sa.Column("version", sa.String(20), nullable=False),
        sa.Column("version_order", sa.BigInteger(), nullable=False),
        sa.Column("platform", sa.String(8), nullable=False),
        sa.Column("title", sa.String(120), nullable=False),
        sa.Column("risk", sa.String(8), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("script", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("live_script_id", sa.String(64)),
        sa.Column("proposed_by", sa.String(64), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by", sa.String(64), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True)),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("superseded_by", _ID),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_script_proposals")),
        sa.UniqueConstraint("live_script_id", name=op.f("uq_script_proposals_live_script_id")),
    )
    op.create_index("ix_script_proposals_state", "script_proposals", ["state"])
    op.create_index(
        "ix_script_proposals_script_id_version", "script_proposals", ["script_id", "version"]
    )


def downgrade() -> None:
    op.drop_index("ix_script_proposals_script_id_version", "script_proposals")
    op.drop_index("ix_script_proposals_state", "script_proposals")
    op.drop_table("script_proposals")
