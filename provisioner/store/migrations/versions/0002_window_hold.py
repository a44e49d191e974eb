"""window_hold: provisioning windows frozen by a spoofing alert (issue 14)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 06:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "window_hold",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine", sqlmodel.sql.sqltypes.AutoString(length=253), nullable=False),
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("second", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("window_hold", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_window_hold_machine"), ["machine"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("window_hold", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_window_hold_machine"))
    op.drop_table("window_hold")
