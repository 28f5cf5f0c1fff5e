"""Alembic environment: runs on the connection ai_service.storage.migrate hands it (online only)."""

from __future__ import annotations

from alembic import context

from ai_service.storage.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through ai_service.storage.migrate (or `ai-service db upgrade`)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
