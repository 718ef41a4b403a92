"""Storage: SQLAlchemy Core schema, migrations, the batch writer and the query API."""
