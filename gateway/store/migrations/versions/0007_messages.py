"""messages: text messages (SIP MESSAGE), accepted, held and refused, with their reasons

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

One row per text: the sender as a call's caller is stored (number, kind, display name, what
the network sent), the decoded body, the verdict and the SIP status it got, and the reason as
English and as code + parameters. Two indexes (time; number and time, for the per-sender
limit): every text is its own commit, and each index is one more page written per text.
Hand-written with frozen types, like the others.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("line", sa.String(length=60), nullable=True),
        sa.Column("sip_call_id", sa.String(length=200), nullable=True),
        sa.Column("number", sa.String(length=20), nullable=True),
        sa.Column("sender_kind", sa.String(length=10), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("raw_from", sa.String(length=256), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("charset", sa.String(length=40), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("step", sa.String(length=12), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reason_code", sa.String(length=40), nullable=True),
        sa.Column("reason_params", sa.JSON(), nullable=True),
        sa.Column("unknown", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_messages_at", "messages", ["at"])
    op.create_index("ix_messages_number_at", "messages", ["number", "at"])


def downgrade() -> None:
    op.drop_table("messages")
