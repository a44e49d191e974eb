"""config_token.code_hash: the per-boot code of a `configCode` cluster (docs/threats.md H1)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 07:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("config_token", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "code_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default=""
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("config_token", schema=None) as batch_op:
        batch_op.drop_column("code_hash")
