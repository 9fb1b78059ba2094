"""The PostgreSQL store's tables, and the forward migrations that create them.

Each deployment owns one schema. ``<schema>.schema_version`` records every migration
applied (one row per version); :func:`migrate` applies the missing ones in order, in one
transaction, under an advisory lock, so replicas starting together migrate once and a
failure leaves the schema as it was. A schema newer than this code knows is refused:
an older keyproof cannot know what a later migration changed.

Tables (version 1):

- ``durable_entries``: revoked token ids, used action ids and every kind not listed as
  ephemeral, so that a new kind is durable unless decided otherwise. An ordinary
  (WAL-logged) table: a commit survives a crash of the database and reaches replicas.
- ``ephemeral_entries``: outstanding challenges, used-nonce tombstones and rate-limit
  counters, in an ``UNLOGGED`` table. Its writes skip the write-ahead log, so they cost
  no fsync; after a crash of the database (or on a promoted replica) PostgreSQL empties
  the table. It is never rolled back to an earlier non-empty state, so a consumed
  challenge can never come back: a crash only drops outstanding challenges (clients ask
  again) and resets the counters.

Version 2 adds ``batch``, a PL/pgSQL function that runs a batch of operations
(:mod:`keyproof.stores.ops`) in one call: one round trip, one transaction.
"""

from __future__ import annotations

import re
from typing import Final

from asyncpg.pool import PoolConnectionProxy
from asyncpg.protocol import Record

from keyproof.errors import ConfigurationError
from keyproof.stores.base import Kind

__all__ = [
    "DURABLE",
    "EPHEMERAL",
    "EPHEMERAL_KINDS",
    "LATEST_VERSION",
    "MIGRATIONS",
    "SCHEMA_PATTERN",
    "migrate",
    "quoted",
    "table_for",
]

DURABLE: Final = "durable_entries"
EPHEMERAL: Final = "ephemeral_entries"
EPHEMERAL_KINDS: Final = frozenset({Kind.CHALLENGE, Kind.USED_NONCE, Kind.COUNTER})
# Lower case so that the name needs no quoting anywhere; "pg_" is reserved.
SCHEMA_PATTERN: Final = re.compile(r"(?!pg_)[a-z_][a-z0-9_]{0,62}")


def _entries(create: str, table: str) -> tuple[str, str]:
    """One table of entries and its index on ``expires_at`` (for reads and the sweep)."""
    return (
        f"{create} {{s}}.{table} (kind text NOT NULL, key text NOT NULL, value bytea,"
        " count bigint, expires_at timestamptz NOT NULL, PRIMARY KEY (kind, key),"
        " CHECK ((value IS NULL) <> (count IS NULL)))",
        f"CREATE INDEX {table}_expires_at ON {{s}}.{table} (expires_at)",
    )


def _per_table(template: str) -> str:
    """A statement of the batch function for the op's table, chosen by ``p_eph[i]``."""
    return (
        f"IF p_eph[i] THEN {template.format(t=f'{{s}}.{EPHEMERAL}')}"
        f" ELSE {template.format(t=f'{{s}}.{DURABLE}')} END IF;"
    )


_LIVE = "kind = p_kind[i] AND key = p_key[i] AND expires_at > now()"
_VALUE = "coalesce(value, convert_to(count::text, 'UTF8'))"
_HIT = (
    "INSERT INTO {t} AS e (kind, key, count, expires_at)"
    " VALUES (p_kind[i], p_key[i], 1, now() + make_interval(secs => p_secs[i]))"
    " ON CONFLICT (kind, key) DO UPDATE SET value = NULL,"
    " count = CASE WHEN e.expires_at <= now() THEN 1 ELSE coalesce(e.count, 0) + 1 END,"
    " expires_at = CASE WHEN e.expires_at <= now() THEN excluded.expires_at"
    " ELSE e.expires_at END RETURNING count INTO n;"
)
_ADD = (
    "INSERT INTO {t} AS e (kind, key, value, expires_at) VALUES (p_kind[i], p_key[i],"
    " p_val[i], now() + make_interval(secs => p_secs[i])) ON CONFLICT (kind, key)"
    " DO UPDATE SET value = excluded.value, count = NULL, expires_at = excluded.expires_at"
    " WHERE e.expires_at <= now() RETURNING decode('01', 'hex') INTO v;"
)
_GET = f"SELECT {_VALUE}, count INTO v, n FROM {{t}} WHERE {_LIVE};"
_TAKE = f"DELETE FROM {{t}} WHERE {_LIVE} RETURNING {_VALUE} INTO v;"
# keyproof.stores.ops in one call: ops in order, stopping after the first that refuses.
# One bytea per op that ran (a count as decimal text, an insert as 0x01 or NULL), plus
# the count of an 'o' hit, which runs in place of the 'h' before it once over its limit.
_BATCH_FUNCTION = f"""CREATE FUNCTION {{s}}.batch(p_op text[], p_kind text[], p_key text[],
 p_val bytea[], p_secs float8[], p_lim bigint[], p_eph boolean[]) RETURNS bytea[]
LANGUAGE plpgsql AS $$
DECLARE
  results bytea[] := ARRAY[]::bytea[];
  i integer := 1;
  n bigint;
  v bytea;
  stop boolean;
BEGIN
  WHILE i <= coalesce(array_length(p_op, 1), 0) LOOP
    stop := false;
    IF p_op[i] = 'a' THEN
      {_per_table(_ADD)}
      results := results || CASE WHEN FOUND THEN v END;
    ELSIF p_op[i] = 'g' THEN
      {_per_table(_GET)}
      IF NOT FOUND THEN v := NULL; n := NULL; END IF;
      results := results || v;
      stop := p_lim[i] IS NOT NULL AND v IS NOT NULL AND coalesce(n, 0) >= p_lim[i];
    ELSIF p_op[i] = 't' THEN
      {_per_table(_TAKE)}
      results := results || CASE WHEN FOUND THEN v END;
    ELSE
      {_per_table(_HIT)}
      results := results || convert_to(n::text, 'UTF8');
      stop := p_lim[i] IS NOT NULL AND n > p_lim[i];
      IF p_op[i + 1] = 'o' THEN
        i := i + 1;
        IF stop THEN
          {_per_table(_HIT)}
          results := results || convert_to(n::text, 'UTF8');
          stop := n > p_lim[i];
        END IF;
      END IF;
    END IF;
    IF stop THEN RETURN results; END IF;
    i := i + 1;
  END LOOP;
  RETURN results;
END
$$"""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (*_entries("CREATE TABLE", DURABLE), *_entries("CREATE UNLOGGED TABLE", EPHEMERAL)),
    (_BATCH_FUNCTION,),
)
"""Statement lists, version 1 first; ``{s}`` is the quoted schema. Append, never edit."""

LATEST_VERSION: Final = len(MIGRATIONS)


def table_for(kind: Kind) -> str:
    return EPHEMERAL if kind in EPHEMERAL_KINDS else DURABLE


def quoted(schema: str) -> str:
    if not SCHEMA_PATTERN.fullmatch(schema):
        raise ValueError("schema must be 1-63 of a-z 0-9 _, not starting with a digit or pg_")
    return f'"{schema}"'


async def migrate(
    conn: PoolConnectionProxy[Record],
    schema: str,
    migrations: tuple[tuple[str, ...], ...] = MIGRATIONS,
) -> tuple[int, int]:
    """Apply the missing ``migrations``; return the version before and after.

    Raises ``ConfigurationError("store_schema_too_new")`` when the schema is at a
    version this code does not know; database errors propagate to the caller.
    """
    s = quoted(schema)
    async with conn.transaction():
        # Serializes replicas migrating the same schema (and its CREATE SCHEMA).
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"keyproof:{schema}"
        )
        if not await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
            await conn.execute(f"CREATE SCHEMA {s}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {s}.schema_version")
        before = int(applied)
        latest = len(migrations)
        if before > latest:
            raise ConfigurationError(
                "store_schema_too_new",
                f"the store schema is at version {before}; this keyproof knows up to "
                f"{latest}: upgrade keyproof",
            )
        for version in range(before + 1, latest + 1):
            for statement in migrations[version - 1]:
                await conn.execute(statement.format(s=s))
            await conn.execute(f"INSERT INTO {s}.schema_version (version) VALUES ($1)", version)
    return before, latest
