"""Child processes the way the local cluster (server/commands/cluster.py) keeps them.

Each child is the leader of a session of its own: the terminal's Ctrl-C reaches the cluster
alone, which then stops its children in order (a replica given SIGINT together with its
granian would skip its drain). Each child gets SIGTERM should the cluster die without
stopping it (Linux's parent-death signal), and once a child has exited whatever is left of
its process group is killed: nothing the cluster started outlives it.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: list[str], *, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (nginx's workers, say)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command may hold spaces and parentheses: the fields start after the last ")".
        state, parent = raw[raw.rindex(")") + 2 :].split()[:2]
        if int(parent) == pid and state != "Z":
            found.add(int(entry))
    return found


def kill_group(pgid: int) -> bool:
    """SIGKILL whatever is left in the process group; whether anything was."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def stop(
    process: subprocess.Popen[bytes],
    signum: int,
    *,
    timeout: float,
    hurry: Callable[[], bool] = lambda: False,
) -> int:
    """Send ``signum``, then :func:`finish`."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)
    return finish(process, timeout=timeout, hurry=hurry)


def finish(
    process: subprocess.Popen[bytes], *, timeout: float, hurry: Callable[[], bool] = lambda: False
) -> int:
    """Wait up to ``timeout`` (less once ``hurry()`` says so), then kill the process group;
    the exit code."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline and not hurry():
        time.sleep(0.05)
    if process.poll() is None:
        kill_group(process.pid)
    code = process.wait()
    kill_group(process.pid)  # what the leader left behind (a worker it did not reap)
    return code


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(port: int, path: str, *, timeout: float = 1.0) -> tuple[int, bytes] | None:
    """GET http://127.0.0.1:port/path: (status, body), or None when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"user-agent": "hotpath-cluster"})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
