"""Storage: SQLAlchemy models, the repository and Alembic migrations."""
