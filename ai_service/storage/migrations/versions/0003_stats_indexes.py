"""stats indexes: the dashboard's model-filtered time ranges, and jobs by the time they finished

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ix_predictions_model is (model, version, created_at): a range over all versions of a model cannot use its time
    op.create_index("ix_predictions_model_created", "predictions", ["model", "created_at"])
    op.create_index("ix_jobs_finished", "jobs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_finished", table_name="jobs")
    op.drop_index("ix_predictions_model_created", table_name="predictions")
