"""The prediction log's tables, defined once; each back end's DDL is derived from them.

SQLAlchemy Core describes the tables, and compiles their ``CREATE`` statements for
SQLite or PostgreSQL; nothing else of SQLAlchemy runs, so no request pays for it. The
column types differ where the engines do: ``seq`` is SQLite's rowid (``INTEGER
PRIMARY KEY``) or a PostgreSQL ``BIGINT`` identity, and ``id`` is text in SQLite and a
native ``uuid`` in PostgreSQL (16 bytes, compared as such in its unique index).

:data:`SCHEMA_VERSION` is the version of these tables in either back end. SQLite logs
keep it in ``user_version``; PostgreSQL logs in the one-row table ``log_schema``,
which SQLite does not need.
"""

from __future__ import annotations

import functools

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from penguins.features import FEATURES

# Version 1 named the algorithm column model_name; version 2 renamed it to algorithm;
# version 3 added the one-row table health checks write to.
SCHEMA_VERSION = 3

# A double everywhere; spelled REAL in SQLite, as the logs written before this module were.
_REAL = Double().with_variant(sqlite.REAL(), "sqlite")

metadata = MetaData()

predictions = Table(
    "predictions",
    metadata,
    # SQLite's rowid must be declared INTEGER to be the key; PostgreSQL counts in BIGINT.
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), Identity(), primary_key=True),
    Column(
        "id",
        Text().with_variant(postgresql.UUID(as_uuid=False), "postgresql"),
        nullable=False,
        unique=True,
    ),
    Column("created_at", _REAL, nullable=False),
    Column("algorithm", Text, nullable=False),
    Column("model_version", Text, nullable=False),
    *(
        Column(name, Integer if name.endswith("_encoded") else _REAL, nullable=False)
        for name in FEATURES
    ),
    Column("predicted_species", Text, nullable=False),
    Column("confidence", _REAL, nullable=False),
    Column("actual_species", Text),
    Column("feedback_at", _REAL),
)
# recent_labelled reads the newest labels: this index holds only the labelled rows.
Index(
    "predictions_feedback",
    predictions.c.feedback_at,
    sqlite_where=predictions.c.feedback_at.isnot(None),
    postgresql_where=predictions.c.feedback_at.isnot(None),
)

# One row that health checks overwrite: a write as real as a prediction's, of no size.
log_probe = Table(
    "log_probe",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("probed_at", _REAL, nullable=False),
)

# PostgreSQL's counterpart of SQLite's user_version.
log_schema = Table("log_schema", metadata, Column("version", Integer, nullable=False))

# What a prediction writes, in this order: everything but the key and the feedback.
WRITTEN_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in predictions.columns if c.name not in ("seq", "actual_species", "feedback_at")
)

_DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}
_TABLES = {"sqlite": (predictions, log_probe), "postgresql": (predictions, log_probe, log_schema)}


@functools.cache
def create_statements(dialect: str) -> tuple[str, ...]:
    """Return the ``CREATE ... IF NOT EXISTS`` statements of a back end's tables and indexes."""
    engine = _DIALECTS[dialect]
    statements = []
    for table in _TABLES[dialect]:
        statements.append(CreateTable(table, if_not_exists=True).compile(dialect=engine))
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            statements.append(CreateIndex(index, if_not_exists=True).compile(dialect=engine))
    return tuple(str(s).strip() for s in statements)
