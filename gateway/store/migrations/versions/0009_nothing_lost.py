"""voicemails.interrupted, notifications.phase and .sender: nothing lost on a crash (issue 11)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

`voicemails.interrupted` marks a message recovered on start from a recording a crash cut
short (saved with the length that reached the disk). `notifications.phase` says how far a send
got (claimed, connecting, data: the message may have reached the server) and `sender` which
process is sending it (host:pid), so that a send a crash interrupted before the server could
have the message is retried on start, and one that may have reached it is never resent.
Adding the columns is instant on SQLite and PostgreSQL; old rows read as not interrupted, and
a NULL phase as "may have been sent" (the behaviour before this migration).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("voicemails") as batch:
        batch.add_column(sa.Column("interrupted", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("phase", sa.String(length=12), nullable=True))
        batch.add_column(sa.Column("sender", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("sender")
        batch.drop_column("phase")
    with op.batch_alter_table("voicemails") as batch:
        batch.drop_column("interrupted")
