"""How the MSI reached a Windows host of a push install (deployment_hosts.msi_delivery):
fetched by the host from the server's package listener over HTTPS, or streamed over WinRM.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployment_hosts") as batch:
        batch.add_column(sa.Column("msi_delivery", sa.String(8), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("deployment_hosts") as batch:
        batch.drop_column("msi_delivery")
