"""The report's "top functions" read py-spy's raw collapsed stacks right."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.suite import state
from bench.suite.profiles import top_functions
from bench.suite.servers import Server

RAW = """process 7:"python -m server";<module> (a.py:1);handle (server/x.py:10);dumps (r.py:3) 6
process 7:"python -m server";<module> (a.py:1);handle (server/x.py:12) 3
process 8:"granian worker";run (g.py:2);fetch (asyncpg/p.py:40) 1
not a stack line
"""


def test_self_samples_are_counted_per_function_with_line_numbers_dropped() -> None:
    total, top = top_functions(RAW)
    assert total == 10
    assert top == [
        ("dumps (r.py)", 0.6),
        ("handle (server/x.py)", 0.3),
        ("fetch (asyncpg/p.py)", 0.1),
    ]


def test_only_the_requested_number_is_named_and_nothing_sampled_is_empty() -> None:
    assert top_functions(RAW, count=1)[1] == [("dumps (r.py)", 0.6)]
    assert top_functions("") == (0, [])


def test_samples_with_no_python_frame_and_idle_pool_threads_are_not_shared_out() -> None:
    raw = (
        'process 7:"granian" 50\n'
        'process 7:"granian";Thread.run (threading.py:982);'
        "_worker (concurrent/futures/thread.py:81) 30\n"
        'process 7:"granian";handle (server/x.py:10) 20\n'
    )
    total, top = top_functions(raw)
    assert total == 100
    assert top == [("handle (server/x.py)", 1.0)]


def test_a_refused_py_spy_leaves_the_run_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*_: object, **__: object) -> None:
        raise subprocess.CalledProcessError(
            1, ["py-spy"], stderr=b"Error: Permission Denied (os error 13)\n"
        )

    monkeypatch.setattr(state, "profile", refused)
    monkeypatch.setattr(state, "py_spy", lambda: "/usr/bin/py-spy")
    bench_run = state.Run(state.Options(), tmp_path)
    bench_run.profile(Server("hotpath", "http://127.0.0.1:1", 1), "ping", "ping.lua", {}, 1)
    assert bench_run.results.profiles == {}
    assert (
        bench_run.results.profiles_skipped
        == "py-spy failed: Error: Permission Denied (os error 13)"
    )
