"""Where the microseconds go: a py-spy profile of hotpath under each scenario's load.

While wrk replays a scenario (after its measurement, so sampling never touches a number in
the table), py-spy samples the server's process tree twice: once into a flame graph (SVG,
written next to the results) and once as raw collapsed stacks, from which the report names
the functions with the most samples of their own ("self" time: the frame on top of the stack;
time in C or Rust below a Python frame counts for that frame). granian's own HTTP work runs
in Rust outside any Python frame and is not sampled: the flame graph shows the Python part.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.suite.wrk import Load, run

RATE = 250  # samples a second
_FRAME_LINE = re.compile(r":\d+\)$")
_IDLE_POOL_THREAD = "_worker (concurrent/futures/thread.py)"


@dataclass(frozen=True)
class Profile:
    svg: Path
    samples: int
    top: list[tuple[str, float]]  # (function (file), share of the samples)


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


def _record(pid: int, seconds: float, fmt: str, out: Path) -> None:
    tool = py_spy()
    assert tool is not None
    subprocess.run(
        [
            tool,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--rate",
            str(RATE),
            "--duration",
            str(max(1, round(seconds))),
            "--format",
            fmt,
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=seconds + 60,
    )


def _under_load(
    base: str, script: str, env: Mapping[str, str], load: Load, pid: int, record: threading.Thread
) -> None:
    record.start()
    run(base, script, env, load, pid)
    record.join()


def profile(
    base: str,
    script: str,
    env: Mapping[str, str],
    load: Load,
    pid: int,
    directory: Path,
    name: str,
) -> Profile:
    """Two recordings of ``load.seconds`` each: the flame graph, then the raw stacks."""
    directory.mkdir(parents=True, exist_ok=True)
    svg, raw = directory / f"{name}.svg", directory / f"{name}.txt"
    for fmt, out in (("flamegraph", svg), ("raw", raw)):
        # wrk runs a second longer than py-spy samples, so no sample sees an idle server.
        recorder = threading.Thread(target=_record, args=(pid, load.seconds, fmt, out))
        _under_load(base, script, env, Load(load.seconds + 1, load.connections), pid, recorder)
    samples, top = top_functions(raw.read_text())
    return Profile(svg, samples, top)


def top_functions(collapsed: str, count: int = 5) -> tuple[int, list[tuple[str, float]]]:
    """The functions with the most self samples in py-spy's raw output ("frame;frame N" per
    line, outermost first), the line numbers dropped so a function is one entry.

    Shares are of the samples with a Python frame on top that was working: a sample with no
    Python frame (the process entries only: granian's Rust threads, the event loop's native
    poll) and one of an idle thread-pool thread waiting for work (``_worker`` of
    concurrent.futures on top) count in the total returned, not in the shares."""
    own: collections.Counter[str] = collections.Counter()
    total = working = 0
    for line in collapsed.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples = int(number)
        total += samples
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames:
            continue
        leaf = _FRAME_LINE.sub(")", frames[-1])
        if leaf == _IDLE_POOL_THREAD:
            continue
        working += samples
        own[leaf] += samples
    if not working:
        return total, []
    return total, [(frame, samples / working) for frame, samples in own.most_common(count)]
