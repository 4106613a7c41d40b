"""client-side identifiers of calls and voicemails

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

The gateway's call writer commits in batches, after the call flow has already referred to the
row (its outcome, its voicemail): each row carries the identifier the gateway gave it, unique,
so a batch replayed from the journal after a crash finds the rows it already wrote instead of
writing them twice. Rows from before this migration keep NULL (unique indexes allow many).

Hand-written with frozen types (see 0002): a migration imports nothing from `gateway`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uid", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_calls_uid", ["uid"], unique=True)
    with op.batch_alter_table("voicemails", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uid", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_voicemails_uid", ["uid"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("voicemails", schema=None) as batch_op:
        batch_op.drop_index("ix_voicemails_uid")
        batch_op.drop_column("uid")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_uid")
        batch_op.drop_column("uid")
