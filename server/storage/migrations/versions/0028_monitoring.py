"""Monitoring (docs/monitoring.md): agent groups with their interval, collectors, clear rule and
threshold overrides; each agent's group and next scheduled check; and the one open monitoring
ticket per machine and finding, with its run of clear checks.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-03 06:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "agent_groups",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("interval_s", sa.Integer(), nullable=False),  # 0: monitoring off
        sa.Column("collectors", sa.Text(), nullable=False, server_default=""),  # comma list
        sa.Column("clear_checks", sa.Integer(), nullable=False, server_default="3"),
        sa.Column("thresholds", sa.Text(), nullable=False, server_default=""),  # JSON object
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "monitoring_agents",
        sa.Column("agent_id", sa.String(26), sa.ForeignKey("agents.id"), primary_key=True),
        sa.Column("group_name", sa.String(64), sa.ForeignKey("agent_groups.name")),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_command_id", sa.String(64), nullable=False, server_default=""),
    )
    op.create_index("ix_monitoring_agents_next_check_at", "monitoring_agents", ["next_check_at"])
    op.create_table(
        "monitoring_findings",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(26), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("check_id", sa.String(64), nullable=False),
        sa.Column("ticket_id", _ID, sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("clear_streak", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "agent_id", "check_id", name="uq_monitoring_findings_agent_id_check_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("monitoring_findings")
    op.drop_index("ix_monitoring_agents_next_check_at", table_name="monitoring_agents")
    op.drop_table("monitoring_agents")
    op.drop_table("agent_groups")
