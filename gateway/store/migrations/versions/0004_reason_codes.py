"""calls: the reason as a code with parameters, so old rows follow a language switch

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

`reason` keeps the English text: rows written before this migration have only that and are
shown as they are. New rows also store `reason_code` (a key of gateway/screening/words.py's
REASONS) and `reason_params` (JSON), which the UI, the digest and the SMS render in the
reader's language. Both nullable, no default to backfill: adding them is instant on SQLite
and on PostgreSQL, whatever the size of the call log.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("reason_code", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("reason_params", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("reason_params")
        batch.drop_column("reason_code")
