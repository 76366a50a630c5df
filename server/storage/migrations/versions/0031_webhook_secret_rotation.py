"""A webhook's secret rotated in place: the previous secret, sealed as the current one is, and
until when it still signs each POST beside the new one.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(sa.Column("previous_sealed_with", sa.String(32)))
        batch.add_column(sa.Column("previous_nonce", sa.LargeBinary()))
        batch.add_column(sa.Column("previous_ciphertext", sa.LargeBinary()))
        batch.add_column(sa.Column("previous_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        for column in ("previous_until", "previous_ciphertext", "previous_nonce"):
            batch.drop_column(column)
        batch.drop_column("previous_sealed_with")
