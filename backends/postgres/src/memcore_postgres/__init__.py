"""memcore backend for PostgreSQL: turns, notes and commits per user and session, with full-text recall."""

from ._backend import SCHEMA_VERSION, PostgresBackend, is_transient

__all__ = ["SCHEMA_VERSION", "PostgresBackend", "is_transient"]
