"""gateway_status: each gateway's heartbeat, so the UI can say whether the gateway is up

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

One row per gateway instance (host and listening addresses), written when it starts, every
few minutes while it runs and when it stops: a handful of small writes an hour, so the SD
card barely notices. Hand-written with frozen types, like the others.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_status",
        sa.Column("instance", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=100), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=10), nullable=False),
        sa.Column("listening", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("instance"),
    )


def downgrade() -> None:
    op.drop_table("gateway_status")
