"""subscriptions: a kind (list or carddav) and the CardDAV account (user, password file)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

A CardDAV subscription keeps the allow list in step with an address book. Only the path of
the password file is stored, never the password: it is read at each refresh, like the other
secrets of the configuration, so neither the database nor a backup holds it. Existing rows
are list subscriptions. Hand-written with frozen types, like the others.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=10), nullable=False,
                                   server_default="list"))
        batch.add_column(sa.Column("username", sa.String(length=200), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("password_file", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("password_file")
        batch.drop_column("username")
        batch.drop_column("kind")
