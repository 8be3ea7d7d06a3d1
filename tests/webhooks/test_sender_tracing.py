"""A webhook delivery carries the W3C trace context when tracing is on: a CLIENT span per
send, exported to a real OTLP/HTTP receiver, whose ids the receiver gets in ``traceparent``;
nothing is added when tracing is off. The traced sender runs in a process of its own: tracing
is per process (OpenTelemetry's global tracer provider), and this one must stay untraced."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from server.webhooks.sender import Sender
from server.webhooks.ssrf import UrlGuard
from tests.fixtures.otlp import SPAN_KIND_CLIENT, ReceivedSpan, otlp_receiver
from tests.fixtures.webhooks import Receiver, running_receiver

HEADERS = {"webhook-id": "msg_1", "webhook-timestamp": "0", "webhook-signature": "v1,x"}
ROOT = Path(__file__).resolve().parents[2]

TRACED_SEND = """
import asyncio, sys
from server.runtime.tracing import flush_tracing, start_tracing
from server.webhooks.sender import Sender
from server.webhooks.ssrf import UrlGuard

start_tracing(sys.argv[1])

async def main() -> None:
    guard = UrlGuard(allow_http=True, allow_networks=("127.0.0.0/8",))
    sender = Sender(guard, timeout=5, connections=1)
    try:
        headers = {"webhook-id": "msg_1", "webhook-timestamp": "0", "webhook-signature": "v1,x"}
        result = await sender.send(1, sys.argv[2], headers, b"{}")
    finally:
        await sender.close()
    print(result.outcome)

asyncio.run(main())
flush_tracing()
"""


def test_a_traced_delivery_sends_its_client_spans_ids() -> None:
    with otlp_receiver() as otlp, running_receiver(Receiver()) as hooks:
        url = f"http://127.0.0.1:{hooks.port}/hooks/s3cr3t-path?token=s3cr3t"
        done = subprocess.run(
            [sys.executable, "-c", TRACED_SEND, otlp.endpoint, url],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[-1] == "succeeded"

        def sent(spans: list[ReceivedSpan]) -> bool:
            return any(span.kind == SPAN_KIND_CLIENT for span in spans)

        (span,) = otlp.wait_for(sent)
    (received,) = hooks.received
    version, trace_id, parent_id, flags = received.headers["traceparent"].split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled (the SDK also sets Level 2's random-id bit, 02)
    assert (trace_id, parent_id) == (span.trace_id, span.span_id)
    assert span.name == "POST"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["server.address"] == "127.0.0.1"
    assert "s3cr3t" not in repr(span.attributes)  # the URL's path and query are not recorded


async def test_an_untraced_delivery_adds_no_trace_header() -> None:
    guard = UrlGuard(allow_http=True, allow_networks=("127.0.0.0/8",))
    sender = Sender(guard, timeout=5, connections=1)
    with running_receiver(Receiver()) as hooks:
        try:
            result = await sender.send(1, hooks.url, HEADERS, b"{}")
        finally:
            await sender.close()
    assert result.outcome == "succeeded"
    (received,) = hooks.received
    assert "traceparent" not in received.headers
    assert "tracestate" not in received.headers
