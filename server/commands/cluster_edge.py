"""The two processes around the local cluster's replicas: nginx in front, Prometheus beside.

nginx runs the configuration rendered from deploy/nginx/nginx.conf.template; a new replica list
is a reload that returns only once nginx's old workers have finished their requests in flight
and exited, so a replica taken out receives nothing more. Prometheus runs
deploy/prometheus/prometheus.yml unchanged, from a folder of its own that also holds the
targets file it reads (rewritten whole whenever the replicas change) and the metrics token.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from server.commands import supervision
from server.commands.nginx_config import Site, Upstream, render
from server.runtime.paths import ROOT

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
NGINX_SHUTDOWN = 30.0  # worker_shutdown_timeout in the template


class ClusterError(Exception):
    """The cluster cannot start, or cannot go on."""


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise ClusterError(
            f"{name} is not installed: `make tools` installs Debian's (as root),"
            f" or apt-get install {name}"
        )
    return found


def write_whole(path: Path, text: str) -> None:
    """Whole or not at all: readers (Prometheus, tests) never see half a file."""
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text)
    os.replace(scratch, path)


class Nginx:
    def __init__(self, *, port: int, run_dir: Path) -> None:
        self.binary = tool("nginx")
        self.port = port
        self.config = run_dir / "nginx.conf"
        self.access_log = run_dir / "nginx-access.log"
        self.error_log = run_dir / "nginx-error.log"
        # The pid and temporary files: a directory the workers (nobody, when nginx starts as
        # root) can enter, which the run directory (a test's tmp_path, say) may not be.
        self.runtime = Path(tempfile.mkdtemp(prefix="hotpath-nginx-"))
        self.runtime.chmod(0o755)
        self.process: subprocess.Popen[bytes] | None = None
        self._rendered = ""

    def configure(self, servers: tuple[Upstream, ...]) -> None:
        """Send traffic to ``servers`` from now on (a reload, when anything changed)."""
        site = Site(
            listen=f"127.0.0.1:{self.port}",
            runtime_dir=str(self.runtime),
            access_log=str(self.access_log),
            error_log=str(self.error_log),
            servers=servers or (Upstream("127.0.0.1:9", down=True),),  # nginx wants one
            worker_processes=str(min(2, os.cpu_count() or 1)),
        )
        config = render(site)
        if config == self._rendered:
            return
        write_whole(self.config, config)
        if self.process is not None:
            self._reload()
        self._rendered = config

    def start(self) -> None:
        self.process = supervision.spawn(self._argv(), log=self.error_log, env=dict(os.environ))
        deadline = time.monotonic() + 10
        while not supervision.accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(
                    f"nginx did not start on 127.0.0.1:{self.port}: see {self.error_log}"
                )
            time.sleep(0.05)

    def stop(self, hurry: Callable[[], bool]) -> None:
        """SIGQUIT: no new connections, the requests in flight finish."""
        if self.process is not None:
            supervision.stop(self.process, signal.SIGQUIT, timeout=NGINX_SHUTDOWN + 5, hurry=hurry)
        shutil.rmtree(self.runtime, ignore_errors=True)

    def _argv(self, *extra: str) -> list[str]:
        return [self.binary, "-e", str(self.error_log), "-c", str(self.config),
                "-g", "daemon off;", *extra]  # fmt: skip

    def _reload(self) -> None:
        """SIGHUP, then wait until every old worker has finished its requests and exited."""
        assert self.process is not None
        check = subprocess.run(self._argv("-t", "-q"), capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise ClusterError(f"nginx refused its new configuration: {check.stderr.strip()}")
        old = supervision.children(self.process.pid)
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + NGINX_SHUTDOWN + 5
        while time.monotonic() < deadline:
            workers = supervision.children(self.process.pid)
            if workers and not workers & old:
                return
            if self.process.poll() is not None:
                raise ClusterError(f"nginx exited during a reload: see {self.error_log}")
            time.sleep(0.02)
        raise ClusterError(f"nginx's old workers were still running after {NGINX_SHUTDOWN} s")


class Prometheus:
    def __init__(self, *, run_dir: Path, metrics_token: str) -> None:
        self.binary = tool("prometheus")
        self.port = supervision.free_port()
        self.folder = run_dir / "prometheus"
        self.config = self.folder / "prometheus.yml"
        self.log = run_dir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None
        (self.folder / "targets" / "worker").mkdir(parents=True, exist_ok=True)
        (self.folder / "secrets").mkdir(mode=0o700, exist_ok=True)
        # The shipped file as it is: its credentials_file and file_sd paths are relative.
        shutil.copyfile(PROMETHEUS_CONFIG, self.config)
        shutil.copytree(
            PROMETHEUS_CONFIG.parent / "rules", self.folder / "rules", dirs_exist_ok=True
        )
        write_whole(self.folder / "secrets" / "metrics_token", metrics_token)
        self._targets = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def scrape(self, replicas: dict[str, str]) -> None:
        """Scrape these replicas (address -> replica label) from now on."""
        targets = json.dumps(
            [
                {"targets": [address], "labels": {"replica": label}}
                for address, label in replicas.items()
            ]
        )
        if targets != self._targets:
            write_whole(self.folder / "targets" / "hotpath.json", targets)
            self._targets = targets

    def scrape_worker(self, address: str) -> None:
        """Scrape the worker's metrics at this address (the ``worker`` job) from now on."""
        write_whole(
            self.folder / "targets" / "worker" / "worker.json",
            json.dumps([{"targets": [address]}]),
        )

    def start(self) -> None:
        self.process = supervision.spawn(
            [
                self.binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            log=self.log,
            env=dict(os.environ),
        )
        deadline = time.monotonic() + 30
        while (answer := supervision.get(self.port, "/-/ready")) is None or answer[0] != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"Prometheus did not start: see {self.log}")
            time.sleep(0.1)

    def stop(self, hurry: Callable[[], bool]) -> None:
        if self.process is not None:
            supervision.stop(self.process, signal.SIGTERM, timeout=15, hurry=hurry)
