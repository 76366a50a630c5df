"""SLA on business hours: the admin's calendars and policies, a ticket's contract and policy,
the instants its clocks turn at risk, what the SLA watch has acted on, and users' mail addresses
(the assignee is told of an assignment and of SLA risk).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02 23:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "business_calendars",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("definition", sa.Text(), nullable=False),  # JSON of calendar_form
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sla_policies",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("contract", sa.String(64), nullable=False, server_default=""),
        sa.Column("priority", sa.String(2), nullable=False),
        sa.Column("response_within_s", sa.Integer(), nullable=False),
        sa.Column("resolve_within_s", sa.Integer(), nullable=False),
        sa.Column(
            "calendar", sa.String(64), sa.ForeignKey("business_calendars.name"), nullable=False
        ),
        sa.Column("at_risk_share", sa.Float(), nullable=False),
        sa.Column("on_risk", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ux_sla_policies_live_name",
        "sla_policies",
        ["name"],
        unique=True,
        sqlite_where=sa.text("retired_at IS NULL"),
        postgresql_where=sa.text("retired_at IS NULL"),
    )
    op.create_index(
        "ux_sla_policies_live_contract_priority",
        "sla_policies",
        ["contract", "priority"],
        unique=True,
        sqlite_where=sa.text("retired_at IS NULL"),
        postgresql_where=sa.text("retired_at IS NULL"),
    )
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("contract", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("sla_policy_id", _ID))
        batch.add_column(sa.Column("response_risk_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("resolve_risk_at", sa.DateTime(timezone=True)))
        batch.create_foreign_key("fk_tickets_sla_policy", "sla_policies", ["sla_policy_id"], ["id"])
    op.create_table(
        "sla_alerts",
        sa.Column("ticket_id", _ID, sa.ForeignKey("tickets.id"), primary_key=True),
        sa.Column("clock", sa.String(8), primary_key=True),  # response | resolve
        sa.Column("state", sa.String(8), primary_key=True),  # at_risk | breached
        sa.Column("noted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acted", sa.String(16), nullable=False),  # notified | escalated | noted
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email", sa.String(254)))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email")
    op.drop_table("sla_alerts")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint("fk_tickets_sla_policy", type_="foreignkey")
        for column in ("resolve_risk_at", "response_risk_at", "sla_policy_id", "contract"):
            batch.drop_column(column)
    op.drop_index("ux_sla_policies_live_contract_priority", table_name="sla_policies")
    op.drop_index("ux_sla_policies_live_name", table_name="sla_policies")
    op.drop_table("sla_policies")
    op.drop_table("business_calendars")
