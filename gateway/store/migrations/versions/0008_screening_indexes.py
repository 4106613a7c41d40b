"""Indexes for screening at scale: entries by kind; the number index without refused calls

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

`ix_list_entries_kind_list`: the gateway caches the glob and regex entries (both lists) and
reloads them when `patterns_version` changes. Without an index on `kind` that reload read
every row: 441 ms at 5 million entries for a few dozen patterns (`SCAN list_entries`).

`ix_calls_number_at` becomes partial: calls a list or a rule refused (step `block` or `rule`)
are left out. In a flood from random numbers each such row dirtied its own leaf page of the
index: 6-12 KB written per refused call on a log of 100,000 calls, against ~1-2 KB without.
Those rows are still found by time (`ix_calls_at`); a search of the log by number reads the
table for them.

Both read the tables once (a few seconds per million rows on a Pi-class SD card).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

NOT_REFUSED = "step NOT IN ('block', 'rule')"  # as gateway/store/models.py has it


def upgrade() -> None:
    op.create_index("ix_list_entries_kind_list", "list_entries", ["kind", "list"])
    op.drop_index("ix_calls_number_at", table_name="calls")
    op.create_index("ix_calls_number_at", "calls", ["number", "at"],
                    sqlite_where=sa.text(NOT_REFUSED), postgresql_where=sa.text(NOT_REFUSED))


def downgrade() -> None:
    op.drop_index("ix_calls_number_at", table_name="calls")
    op.create_index("ix_calls_number_at", "calls", ["number", "at"])
    op.drop_index("ix_list_entries_kind_list", table_name="list_entries")
