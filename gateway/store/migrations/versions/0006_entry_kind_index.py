"""list_entries: an index on (kind, list), so the screener reads its patterns without a scan

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

The gateway caches the glob and regex entries (both lists) and reloads them when
`patterns_version` changes. Without an index on `kind` that reload read every row: 441 ms at
5 million entries for a few dozen patterns (`EXPLAIN QUERY PLAN`: `SCAN list_entries`). With
it, the reload is a range of the index. Building it reads the table once (about 2 s per
million entries on a Pi-class SD card); nothing is rewritten.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_list_entries_kind_list", "list_entries", ["kind", "list"])


def downgrade() -> None:
    op.drop_index("ix_list_entries_kind_list", table_name="list_entries")
