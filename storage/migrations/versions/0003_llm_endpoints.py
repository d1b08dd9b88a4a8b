"""llm endpoints: remembered capabilities per base URL and model

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 14:30:00.000000
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
    op.create_table(
        "llmendpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("base_url", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("response_format", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("images", sa.Boolean(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("base_url", "model"),
    )
    with op.batch_alter_table("llmendpoint", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_llmendpoint_base_url"), ["base_url"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("llmendpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_llmendpoint_base_url"))

    op.drop_table("llmendpoint")
