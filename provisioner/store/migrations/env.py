"""Alembic environment: always run with a connection handed in by provisioner.store.migrate."""

from alembic import context
from sqlmodel import SQLModel

from provisioner.store import tables  # noqa: F401 - registers the tables

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `provisioner db upgrade`")
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite needs batch mode for ALTER TABLE
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
