"""Outbound webhooks: the admin's endpoints, each with its delivery cursor and lease, and the
writing transaction of every ticket event (PostgreSQL), so the delivery never skips an event
that commits after a later one.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 23:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # 0 for the events written before (all committed) and on SQLite (one writer: ids commit in
    # order); on PostgreSQL each new event takes its transaction's id (for the webhook feed).
    op.add_column(
        "ticket_events",
        sa.Column("xact_id", sa.BigInteger(), nullable=False, server_default="0"),
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE ticket_events ALTER COLUMN xact_id "
            "SET DEFAULT (pg_current_xact_id()::text::bigint)"
        )
    op.create_index("ix_ticket_events_xact_id_id", "ticket_events", ["xact_id", "id"])
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", sa.Text(), nullable=False, server_default=""),  # JSON list; [] all
        sa.Column("ca_pem", sa.Text(), nullable=False, server_default=""),
        sa.Column("sealed_with", sa.String(32), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        # Delivered up to (xact_id, event id) in the feed's order.
        sa.Column("cursor_xact", sa.BigInteger(), nullable=False),
        sa.Column("cursor_event", sa.BigInteger(), nullable=False),
        sa.Column("delivered", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_success_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        sa.Column("last_error_at", sa.DateTime(timezone=True)),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_ticket_events_xact_id_id", table_name="ticket_events")
    op.drop_column("ticket_events", "xact_id")
