"""The database: tables, migrations, the Store interface, secrets at rest."""
