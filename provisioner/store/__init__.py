"""The database behind one narrow interface.

- `base.Store`: the Protocol every subsystem's store port is a part of.
- `repository.SqlStore`: the SQL implementation (SQLAlchemy; SQLite or PostgreSQL), with
  `inventory_sql` (inventory snapshot and write), `tokens` (config tokens) and `assets`
  (asset sets) over the same database; `tables`, `db`, `migrate`, `migrations`: the schema.
- `memory.MemoryStore` / `broken.BrokenStore`: behavioural fakes for unit tests.
- `records`: the frozen values callers get; `crypto`: secrets at rest.
"""
