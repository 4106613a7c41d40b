"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('line', sa.String(length=60), nullable=True),
    sa.Column('sip_call_id', sa.String(length=200), nullable=True),
    sa.Column('number', sa.String(length=20), nullable=True),
    sa.Column('caller_kind', sa.String(length=10), nullable=False),
    sa.Column('display_name', sa.String(length=256), nullable=False),
    sa.Column('raw_from', sa.String(length=256), nullable=False),
    sa.Column('verstat', sa.String(length=30), nullable=True),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('step', sa.String(length=12), nullable=False),
    sa.Column('rule', sa.String(length=40), nullable=True),
    sa.Column('unknown', sa.Boolean(), nullable=False),
    sa.Column('burst', sa.Boolean(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('outcome', sa.String(length=60), nullable=True),
    sa.Column('screen_ms', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calls_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_at'), ['at'], unique=False)
        batch_op.create_index('ix_calls_number_at', ['number', 'at'], unique=False)

    op.create_table('line_states',
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('list_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('pattern', sa.String(length=200), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=True),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('once', sa.Boolean(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.Column('last_hit_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('list_entries', schema=None) as batch_op:
        batch_op.create_index('ix_list_entries_pattern', ['pattern', 'list'], unique=True)
        batch_op.create_index(batch_op.f('ix_list_entries_source'), ['source'], unique=False)

    op.create_table('rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('settings',
    sa.Column('key', sa.String(length=60), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('voicemails',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=True),
    sa.Column('display_name', sa.String(length=256), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('heard', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('voicemails', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voicemails_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_voicemails_call_id'), ['call_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('voicemails', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voicemails_call_id'))
        batch_op.drop_index(batch_op.f('ix_voicemails_at'))

    op.drop_table('voicemails')
    op.drop_table('settings')
    op.drop_table('rules')
    with op.batch_alter_table('list_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_list_entries_source'))
        batch_op.drop_index('ix_list_entries_pattern')

    op.drop_table('list_entries')
    op.drop_table('line_states')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_number_at')
        batch_op.drop_index(batch_op.f('ix_calls_at'))
        batch_op.drop_index(batch_op.f('ix_calls_action'))

    op.drop_table('calls')
