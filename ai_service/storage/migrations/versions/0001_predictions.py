"""predictions: one row per predicted image (history)

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JSON = sa.JSON()  # text as written (JSONB would reorder keys)


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("item_index", sa.Integer, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("mode", sa.String(16), nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("http_status", sa.Integer, nullable=False),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("top1_label", sa.String(255), nullable=True),
        sa.Column("top1_score", sa.Double, nullable=True),
        sa.Column("timing_ms", JSON, nullable=True),
        sa.Column("total_ms", sa.Double, nullable=True),
        sa.Column("batch_size", sa.Integer, nullable=False),
        sa.Column("client", sa.String(128), nullable=False),
        sa.Column("input_stored", sa.Boolean, nullable=False),
        sa.Column("output_sha256", sa.String(64), nullable=True),
    )
    op.create_index("ix_predictions_created", "predictions", ["created_at", "id"])
    op.create_index("ix_predictions_model", "predictions", ["model", "version", "created_at"])
    op.create_index("ix_predictions_status", "predictions", ["status", "created_at"])
    op.create_index("ix_predictions_source", "predictions", ["source", "created_at"])
    op.create_index("ix_predictions_request", "predictions", ["request_id"])
    op.create_index("ix_predictions_input", "predictions", ["input_sha256"])
    op.create_index("ix_predictions_output", "predictions", ["output_sha256"])
    op.create_index("ix_predictions_job", "predictions", ["job_id", "item_index"])


def downgrade() -> None:
    op.drop_table("predictions")
