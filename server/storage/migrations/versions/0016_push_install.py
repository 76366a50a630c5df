"""Push installs: one row per `sonde deploy`, one per host with the stage it reached.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_version", sa.String(64), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("retry_of", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    op.create_table(
        "deployment_hosts",
        sa.Column("deployment_id", sa.String(16), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("login", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("credential_name", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("failed_check", sa.String(32), nullable=False, server_default=""),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("found_version", sa.String(64), nullable=False, server_default=""),
        sa.Column("agent_id", sa.String(26), nullable=True),
        sa.Column("token_id", sa.String(16), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_hosts_deployment_id_deployments"),
        ),
        sa.PrimaryKeyConstraint("deployment_id", "position", name=op.f("pk_deployment_hosts")),
    )
    op.create_index(
        op.f("ix_deployment_hosts_host_port_transport"),
        "deployment_hosts",
        ["host", "port", "transport"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_deployment_hosts_host_port_transport"), table_name="deployment_hosts")
    op.drop_table("deployment_hosts")
    op.drop_table("deployments")
