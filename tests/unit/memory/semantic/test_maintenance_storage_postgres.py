"""``PostgresWindowStorage``, the PostgreSQL-only parts of live reload: the trigger-kept
change counter (``maintenance_changes``). Behaviour common to every storage is in
``tests/contracts/test_maintenance_calendar.py``."""

from __future__ import annotations

import asyncpg

from netcortex.memory.semantic.maintenance_storage import PostgresWindowStorage

ROW = ("w1", "device", "sw1", 1_748_772_000, 1_748_779_200, None, "UTC", "", 0)


async def test_a_lost_change_counter_does_not_stop_reloading(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """With the counter row deleted by hand (the trigger then updates nothing), every
    poll reads the table rather than none ever seeing a change again."""
    writer = PostgresWindowStorage(postgres_dsn, postgres_schema)
    reader = PostgresWindowStorage(postgres_dsn, postgres_schema)
    await writer.open()
    await reader.open()
    try:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(f'DELETE FROM "{postgres_schema}".maintenance_changes')
        finally:
            await conn.close()
        await reader.poll()
        await writer.upsert(ROW)
        assert await reader.poll() == [ROW]
    finally:
        await reader.close()
        await writer.close()
