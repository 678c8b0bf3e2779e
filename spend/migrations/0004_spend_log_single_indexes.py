# The spend log's request_id and key_hash get their unique constraint and index through Meta,
# so that PostgreSQL no longer keeps a second, LIKE (pattern_ops) index beside each.
#
# On PostgreSQL the log may be large and written all the time: instead of rebuilding both
# indexes under an exclusive lock (what the plain operations would do), the LIKE indexes are
# dropped CONCURRENTLY and the existing index and constraint are renamed. Elsewhere the plain
# operations run.

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import migrations, models, transaction
from django.db.migrations.operations.base import Operation

TABLE = "spend_spendlog"
PATTERN_INDEXES = """
    SELECT indexname FROM pg_indexes
    WHERE schemaname = current_schema() AND tablename = %s AND indexdef LIKE %s
"""
INDEX = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname = %s"
CONSTRAINT = "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND conname = %s"
UNIQUE_ON = """
    SELECT conname FROM pg_constraint
    WHERE conrelid = %s::regclass AND contype = 'u' AND conkey = ARRAY[(
        SELECT attnum FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s
    )]::smallint[]
"""


def names(cursor: Any, query: str, *params: str) -> list[str]:
    cursor.execute(query, params)
    return [name for (name,) in cursor.fetchall()]


@contextmanager
def lock_timeout(cursor: Any) -> Iterator[None]:
    """A rename waits for the log's lock at most this long instead of holding up its
    writers behind it; run the migration again if it gave up."""
    cursor.execute("SET lock_timeout = '10s'")
    try:
        yield
    finally:
        cursor.execute("RESET lock_timeout")


class SpendLogIndexes(Operation):
    """The plain operations' state; on PostgreSQL, the cheap way to the same schema."""

    reversible = True
    atomic = False
    reduces_to_sql = False  # it looks the names up: sqlmigrate must not run it

    def __init__(self, operations: list[Operation]) -> None:
        self.operations = operations

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return self.__class__.__name__, [self.operations], {}

    def describe(self) -> str:
        return "Spend log: request_id unique and key_hash indexed through Meta"

    def state_forwards(self, app_label: str, state: Any) -> None:
        for operation in self.operations:
            operation.state_forwards(app_label, state)

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            self._plain(app_label, schema_editor, from_state, forwards=True)
            return
        # Each step is skipped when done already, so that a run stopped half-way (say by the
        # lock timeout on a busy log) can be run again.
        with schema_editor.connection.cursor() as cursor, lock_timeout(cursor):
            for name in names(cursor, PATTERN_INDEXES, TABLE, "%pattern_ops%"):
                cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
            if not names(cursor, INDEX, "spend_log_key_hash"):
                (index,) = names(cursor, PATTERN_INDEXES, TABLE, "%(key_hash)")
                cursor.execute(f'ALTER INDEX "{index}" RENAME TO spend_log_key_hash')
            if not names(cursor, CONSTRAINT, TABLE, "spend_log_request_id_unique"):
                (constraint,) = names(cursor, UNIQUE_ON, TABLE, TABLE, "request_id")
                cursor.execute(
                    f'ALTER TABLE {TABLE} RENAME CONSTRAINT "{constraint}" '
                    "TO spend_log_request_id_unique"
                )

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            self._plain(app_label, schema_editor, to_state, forwards=False)
            return
        # The names Django gives these on PostgreSQL, so that later field changes find them.
        key_hash_index = schema_editor._create_index_name(TABLE, ["key_hash"])
        with schema_editor.connection.cursor() as cursor, lock_timeout(cursor):
            if names(cursor, CONSTRAINT, TABLE, "spend_log_request_id_unique"):
                cursor.execute(
                    f"ALTER TABLE {TABLE} RENAME CONSTRAINT spend_log_request_id_unique "
                    f"TO {TABLE}_request_id_key"
                )
            if names(cursor, INDEX, "spend_log_key_hash"):
                cursor.execute(f'ALTER INDEX spend_log_key_hash RENAME TO "{key_hash_index}"')
            for column in ("request_id", "key_hash"):
                like = schema_editor._create_index_name(TABLE, [column], suffix="_like")
                cursor.execute(
                    f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{like}" '
                    f"ON {TABLE} ({column} varchar_pattern_ops)"
                )

    def _plain(self, app_label: str, schema_editor: Any, state: Any, *, forwards: bool) -> None:
        """Elsewhere than PostgreSQL: the plain operations one state after the other
        (backwards: in reverse), in one transaction."""
        states = [state]
        for operation in self.operations:
            following = states[-1].clone()
            operation.state_forwards(app_label, following)
            states.append(following)
        steps = list(zip(self.operations, states, states[1:]))
        with transaction.atomic(using=schema_editor.connection.alias):
            for operation, before, after in steps if forwards else reversed(steps):
                if forwards:
                    operation.database_forwards(app_label, schema_editor, before, after)
                else:
                    operation.database_backwards(app_label, schema_editor, after, before)


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("spend", "0003_budget_alerts"),
    ]

    operations = [
        SpendLogIndexes(
            [
                migrations.AlterField(
                    model_name="spendlog",
                    name="key_hash",
                    field=models.CharField(blank=True, max_length=64),
                ),
                migrations.AlterField(
                    model_name="spendlog",
                    name="request_id",
                    field=models.CharField(max_length=64),
                ),
                migrations.AddIndex(
                    model_name="spendlog",
                    index=models.Index(fields=["key_hash"], name="spend_log_key_hash"),
                ),
                migrations.AddConstraint(
                    model_name="spendlog",
                    constraint=models.UniqueConstraint(
                        fields=("request_id",), name="spend_log_request_id_unique"
                    ),
                ),
            ]
        ),
    ]
