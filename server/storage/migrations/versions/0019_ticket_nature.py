"""The nature of each request and the quality of its closure: a ticket's kind (incident or
service request) and category from the admin's tree (ticket_categories), who at L2 confirmed
it, and on resolve its outcome and the time spent.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ticket_categories",
        sa.Column("path", sa.String(120), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True)),
    )
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="incident")
        )
        batch.add_column(sa.Column("category", sa.String(120)))
        batch.add_column(sa.Column("category_confirmed_by", sa.String(64)))
        batch.add_column(sa.Column("outcome", sa.String(24), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("time_spent_s", sa.Integer(), nullable=False, server_default="0")
        )
        batch.create_foreign_key("fk_tickets_category", "ticket_categories", ["category"], ["path"])


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint("fk_tickets_category", type_="foreignkey")
        for column in ("time_spent_s", "outcome", "category_confirmed_by", "category", "kind"):
            batch.drop_column(column)
    op.drop_table("ticket_categories")
