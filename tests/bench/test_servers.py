"""A measured server's stdout is read by a process of its own, as a container runtime reads it,
never by a thread of the bench's process: the open-model generator runs there, and a reader
starved of the GIL by its event loop let the pipe fill and blocked the server's writes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

from bench.suite.servers import running, running_all

SERVER = """
import http.server, sys
print('{"message":"http_request","url.path":"/"}', flush=True)
print('{"message":"started","log.level":"info"}', flush=True)

class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Answer).serve_forever()
"""


def _pipe_readers(inode: str) -> set[int]:
    """Processes holding the pipe ``inode`` open (either end)."""
    holders = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) == inode:
                    holders.add(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return holders


def test_the_stdout_is_read_by_another_process_and_access_lines_are_dropped(
    tmp_path: Path,
) -> None:
    log = tmp_path / "servers.log"
    command = [sys.executable, "-c", SERVER, "{port}"]
    with running("stub", command, {}, ready_path="/", log=log) as server:
        inode = os.readlink(f"/proc/{server.pid}/fd/1")
        assert inode.startswith("pipe:")
        holders = _pipe_readers(inode)
        assert os.getpid() not in holders
        assert holders - {server.pid}  # its reader
    lines = log.read_text().splitlines()
    assert '{"message":"started","log.level":"info"}' in lines
    assert not [line for line in lines if '"message":"http_request"' in line]


# Serves only once every stub of the test has started (each leaves a file in argv[2]'s
# directory and waits for all three): started and waited for one after another, the first
# never answers and exits after 30 s.
BARRIER = """
import pathlib, sys, time
here = pathlib.Path(sys.argv[2])
(here / sys.argv[3]).touch()
deadline = time.monotonic() + 30
while len(list(here.iterdir())) < 3:
    if time.monotonic() > deadline:
        sys.exit("not every server was started")
    time.sleep(0.05)
"""


def test_running_all_starts_every_server_before_waiting_and_stops_them_all(
    tmp_path: Path,
) -> None:
    log = tmp_path / "servers.log"
    started = tmp_path / "started"
    started.mkdir()
    starts: dict[str, tuple[list[str], dict[str, str], str]] = {
        name: ([sys.executable, "-c", BARRIER + SERVER, "{port}", str(started), name], {}, "/")
        for name in "abc"
    }
    with running_all(starts, log=log) as servers:
        assert set(servers) == {"a", "b", "c"}
        assert len({server.base for server in servers.values()}) == 3
        for name, server in servers.items():
            assert server.name == name
            assert httpx.get(server.base + "/").status_code == 200
        pids = [server.pid for server in servers.values()]
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]  # stopped and reaped
