"""What runs whatever the tracing setting: the OTLP/HTTP URL rule, and an outbound call in a
process without tracing (this one: tracing is started only by a server or worker that has an
endpoint) adds no header and records nothing."""

from __future__ import annotations

from server.runtime.tracing import active_tracer, outbound_call, start_tracing, traces_url


def test_the_traces_path_is_added_unless_named() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://otlp.example/v1/traces") == "https://otlp.example/v1/traces"
    assert traces_url("https://gw.example/otlp") == "https://gw.example/otlp/v1/traces"


def test_without_an_endpoint_nothing_starts_and_outbound_calls_stay_untraced() -> None:
    assert start_tracing(None) is None
    assert active_tracer() is None
    with outbound_call("POST", "https://hooks.example/secret") as call:
        assert call.headers == {}
        call.answered(500)  # nothing to record it on
