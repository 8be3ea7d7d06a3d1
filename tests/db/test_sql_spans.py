"""SQL spans on a real pool and PostgreSQL: a statement of sql/ is a CLIENT span named by its
query (the repository's call, unchanged), any other by its first word; no argument or text is
recorded; spans are children of the span current when the statement runs; and the pool reuses
a traced connection as it does a plain one. The tracer here is a provider of the test's own
(not OpenTelemetry's global one), exporting to memory."""

from __future__ import annotations

from dataclasses import replace

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from server.catalog.repository import ProductsRepository
from server.db.connection import PooledConnection
from server.db.database import Database, create_pool
from server.db.sql_spans import connection_class, traced_connection_class
from server.db.sqlfiles import load_queries
from server.runtime.settings import Settings


def test_with_tracing_off_the_pool_opens_plain_connections() -> None:
    assert connection_class(load_queries()) is PooledConnection


async def test_statements_are_spans_named_by_their_query(settings: Settings) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("test")
    queries = load_queries()
    traced = traced_connection_class(tracer, queries)
    small = replace(settings, db_pool_min=1, db_pool_max=1)
    db = Database(await create_pool(small, connection_class=traced), acquire_timeout=2.0)
    products = ProductsRepository(queries)
    try:
        with tracer.start_as_current_span("request") as request:
            async with db.connection() as conn:
                assert isinstance(conn, traced)
                assert await products.get(conn, 987654321) is None
                assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
            async with db.connection() as again:  # the one connection, given back and reused
                assert again is conn
                assert await again.fetchval("  select 'x'") == "x"
    finally:
        await db.close()
    spans = {span.name: span for span in exported.get_finished_spans() if span.name != "request"}
    assert set(spans) == {"get_product", "SELECT"}  # two statements began with SELECT
    named = spans["get_product"]
    assert named.kind == SpanKind.CLIENT
    assert dict(named.attributes or {}) == {
        "db.system.name": "postgresql",
        "db.query.summary": "get_product",
    }
    assert dict(spans["SELECT"].attributes or {}) == {"db.system.name": "postgresql"}
    every = [span for span in exported.get_finished_spans() if span.name != "request"]
    assert len(every) == 3
    assert all(span.parent is not None for span in every)
    assert {span.parent.span_id for span in every if span.parent} == {
        request.get_span_context().span_id
    }
    assert "987654321" not in repr([span.attributes for span in every])
    assert "41" not in repr([span.attributes for span in every])
