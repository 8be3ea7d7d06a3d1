"""``python -m server cluster``: compose's topology on one machine, without containers.

N replicas (``python -m server serve``, one granian worker each, on loopback ports picked here),
one ``python -m server worker`` sending their webhooks and mail (server/commands/cluster_worker.py),
Debian's nginx on 127.0.0.1:PORT in front of the replicas and Debian's Prometheus scraping the
replicas and the worker, each with the configuration deploy/ ships
(server/commands/cluster_edge.py). Everything runs in the
foreground; logs, configurations and cluster.json (where everything listens, for scripts and
tests) are in the run directory.

While it runs, this process does for the replicas what an orchestrator does:
- nginx sends traffic to ready replicas only: one is added once /readyz answers 200, and taken
  out after two failed probes in a row or as soon as its process exits;
- a replica whose process exits is started again, on a new port;
- SIGHUP rolls the replicas one at a time: a new one is started and, once ready, takes the old
  one's place in nginx, whose reload returns once the old workers have finished their requests
  in flight; only then is the old replica sent SIGTERM (it drains for HOTPATH_DRAIN_SECONDS,
  then stops), so it answers nothing once its drain has begun;
- the worker is started again, on a new metrics port, if it exits;
- SIGINT or SIGTERM stops everything: nginx gracefully, then the replicas (each drains) and
  the worker, then Prometheus. A second signal kills what is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

from structlog.typing import FilteringBoundLogger

from server.commands import supervision
from server.commands.cluster_edge import ClusterError, Nginx, Prometheus, write_whole
from server.commands.cluster_worker import ClusterWorker
from server.commands.nginx_config import Upstream
from server.commands.serve import DEMO_USERS, WORKERS_KILL_TIMEOUT, startup_problems
from server.runtime.metrics import MULTIPROC_ENV
from server.runtime.settings import Settings, SettingsError

PROBE_EVERY = 0.5  # seconds between two rounds of /readyz probes
UNREADY_AFTER = 2  # failed probes in a row
START_TIMEOUT = 90.0  # for a replica to be ready (migrations may run first)
DEFAULT_DRAIN_SECONDS = "1"  # unless HOTPATH_DRAIN_SECONDS says otherwise
MAX_BACKOFF = 30.0  # between two starts of a replica that keeps exiting before it is ready


@dataclass
class Replica:
    index: int  # its slot, 1 to N: replica 2 is still replica 2 after a restart
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    ready: bool = False
    failures: int = 0
    last_probe: str = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def view(self) -> dict[str, object]:
        return {"index": self.index, "pid": self.process.pid, "port": self.port,
                "url": self.url, "log": str(self.log), "ready": self.ready}  # fmt: skip


@dataclass
class Slot:
    replica: Replica | None = None
    starts: int = 0
    crashes: int = 0  # exits in a row before ever being ready
    start_at: float = field(default=0.0)  # when to start one again, while there is none


class Cluster:
    def __init__(
        self, settings: Settings, *, replicas: int, port: int, run_dir: Path, migrate: bool
    ) -> None:
        self.settings = settings
        self.port = port
        self.run_dir = run_dir
        self.migrate = migrate
        self.slots = [Slot() for _ in range(replicas)]
        self.retired: list[dict[str, object]] = []
        self.rolls = 0
        self.signals: list[int] = []
        self.roll_wanted = False
        self.ready = False
        metrics_token = settings.metrics_token or secrets.token_hex(24)
        self.env = self._replica_env(replicas, metrics_token)
        # Prometheus first: when either is not installed, no temporary directory is left.
        self.prometheus = Prometheus(run_dir=run_dir, metrics_token=metrics_token)
        self.nginx = Nginx(port=port, run_dir=run_dir)
        self.worker = ClusterWorker(self.env, run_dir)
        self.worker_start_at = 0.0  # when to start it again, after it exited

    # ------------------------------------------------------------------ start and stop

    def start(self) -> None:
        for index in range(len(self.slots)):
            self._start_replica(index)
        self._wait_ready([s.replica for s in self.slots if s.replica is not None])
        self._start_worker()
        self._publish()
        self.nginx.start()
        self.prometheus.start()
        self.ready = True
        self._write_state()

    def run(self) -> None:
        """Tend the replicas until a stop signal."""
        while not self.signals:
            if self.roll_wanted:
                self.roll_wanted = False
                self.roll()
            self._tend()
            self._pause(PROBE_EVERY)

    def stop(self) -> None:
        """nginx first (no new requests; those in flight finish), then every replica at once
        (each drains), then Prometheus; what does not stop in time is killed."""
        self.ready = False
        self.nginx.stop(self._hurry)
        running = [s.replica for s in self.slots if s.replica is not None]
        for replica in running:
            with contextlib.suppress(ProcessLookupError):
                replica.process.send_signal(signal.SIGTERM)
        self.worker.stop(self._hurry)
        for replica in running:
            supervision.finish(replica.process, timeout=self._stop_timeout(), hurry=self._hurry)
        self.prometheus.stop(self._hurry)
        self._write_state()

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.roll_wanted = True
        else:
            self.signals.append(signum)

    def _hurry(self) -> bool:
        return len(self.signals) > 1

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.signals:
            time.sleep(0.02)

    def _stop_timeout(self) -> float:
        return float(self.env["HOTPATH_DRAIN_SECONDS"]) + WORKERS_KILL_TIMEOUT + 10

    # ------------------------------------------------------------------ replicas

    def _replica_env(self, replicas: int, metrics_token: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop(MULTIPROC_ENV, None)
        env.setdefault("HOTPATH_DRAIN_SECONDS", DEFAULT_DRAIN_SECONDS)
        # Mails point at nginx, not at the replica that wrote them (on a port of its own).
        env.setdefault("HOTPATH_PUBLIC_URL", f"http://127.0.0.1:{self.port}")
        env.update(
            DATABASE_URL=self.settings.database_url,
            REDIS_URL=self.settings.redis_url or "",
            HOTPATH_SECRET_KEY=self.settings.secret_key,
            HOTPATH_DATA_DIR=str(self.settings.data_dir.resolve()),
            HOTPATH_METRICS_TOKEN=metrics_token,
            # nginx connects from here: its X-Forwarded-For is believed, nobody else's.
            HOTPATH_TRUSTED_PROXIES="127.0.0.1/32",
            HOTPATH_RATE_LIMIT_REPLICAS=str(replicas),
            HOTPATH_WORKERS="1",
        )
        return env

    def _start_worker(self) -> None:
        self.worker.start()
        if not self.worker.wait_ready(self._hurry):
            raise ClusterError(f"the worker's metrics did not answer: see {self.worker.log}")
        self.prometheus.scrape_worker(self.worker.address)

    def _start_replica(self, index: int) -> Replica:
        slot = self.slots[index]
        slot.starts += 1
        port = supervision.free_port()
        serve = [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1",
                 "--port", str(port), "--workers", "1"]  # fmt: skip
        argv = serve
        if self.migrate:  # as an init container would: every replica, all at once
            script = f'{shlex.quote(sys.executable)} -m server migrate && exec "$@"'
            argv = ["sh", "-c", script, "sh", *serve]
        log = self.run_dir / f"replica-{index + 1}.{slot.starts}.log"
        replica = Replica(index + 1, port, supervision.spawn(argv, log=log, env=self.env), log)
        slot.replica = replica
        return replica

    def _probe(self, replica: Replica) -> bool:
        answer = supervision.get(replica.port, "/readyz")
        replica.last_probe = "no answer" if answer is None else answer[1].decode(errors="replace")
        return answer is not None and answer[0] == 200

    def _wait_ready(self, replicas: list[Replica]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        waiting = list(replicas)
        while waiting:
            for replica in list(waiting):
                if replica.process.poll() is not None:
                    raise ClusterError(
                        f"replica {replica.index} exited with {replica.process.returncode}:"
                        f" see {replica.log}"
                    )
                if self._probe(replica):
                    replica.ready = True
                    waiting.remove(replica)
            if self.signals:
                raise ClusterError("stopped while starting")
            if time.monotonic() > deadline:
                late = ", ".join(f"{r.index} ({r.last_probe})" for r in waiting)
                raise ClusterError(f"not ready within {START_TIMEOUT:.0f} s: replica {late}")
            time.sleep(0.1)

    def _tend(self) -> None:
        """Probe every replica, start again the ones that exited, and publish the changes."""
        for name, process in (
            ("nginx", self.nginx.process),
            ("Prometheus", self.prometheus.process),
        ):
            if process is not None and process.poll() is not None:
                raise ClusterError(f"{name} exited with {process.returncode}: see {self.run_dir}")
        now = time.monotonic()
        if (code := self.worker.exited()) is not None:
            print(f"cluster: the worker exited with {code}; starting another", flush=True)
            self.worker_start_at = now + min(MAX_BACKOFF, float(self.worker.starts))
        if self.worker.process is None and now >= self.worker_start_at:
            self.worker.start()
            self.prometheus.scrape_worker(self.worker.address)
        for index, slot in enumerate(self.slots):
            replica = slot.replica
            if replica is None:
                if now >= slot.start_at:
                    self._start_replica(index)
                continue
            code = replica.process.poll()
            if code is not None:
                supervision.kill_group(replica.process.pid)
                self._retire(replica, f"exited with {code}")
                slot.replica = None
                slot.crashes = 0 if replica.ready else slot.crashes + 1
                slot.start_at = now + min(MAX_BACKOFF, 2.0**slot.crashes - 1)
                print(f"cluster: replica {replica.index} (pid {replica.process.pid}) exited"
                      f" with {code}; starting another", flush=True)  # fmt: skip
            elif self._probe(replica):
                replica.ready, replica.failures = True, 0
            else:
                replica.failures += 1
                replica.ready = replica.ready and replica.failures < UNREADY_AFTER
        self._publish()

    def roll(self) -> None:
        """Replace every replica, one at a time, never with fewer than N ready."""
        print("cluster: rolling the replicas", flush=True)
        for index, slot in enumerate(self.slots):
            old = slot.replica
            new = self._start_replica(index)  # the slot names the new one from here on
            try:
                self._wait_ready([new])
            except ClusterError as error:
                print(f"cluster: roll stopped: {error}", flush=True)
                supervision.stop(new.process, signal.SIGKILL, timeout=5)
                slot.replica = old
                return
            self._publish()  # the new one in, the old one out of nginx, its requests finished
            if old is not None:
                self._retire(old, "rolled")
                supervision.stop(old.process, signal.SIGTERM, timeout=self._stop_timeout(),
                                 hurry=self._hurry)  # fmt: skip
            print(f"cluster: replica {new.index} now {new.url} (pid {new.process.pid})",
                  flush=True)  # fmt: skip
            if self.signals:
                return
        self.rolls += 1
        self._write_state()

    def _retire(self, replica: Replica, why: str) -> None:
        self.retired.append({**replica.view(), "ready": False, "why": why, "at": time.time()})
        self._write_state()

    # ------------------------------------------------------------------ what others read

    def _publish(self) -> None:
        """nginx's upstream and Prometheus' targets, from the replicas as they are now."""
        running = [s.replica for s in self.slots if s.replica is not None]
        self.nginx.configure(tuple(Upstream(r.address, down=not r.ready) for r in running))
        self.prometheus.scrape({r.address: str(r.index) for r in running})
        self._write_state()

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "ready": self.ready,
            "url": f"http://127.0.0.1:{self.port}",
            "run_dir": str(self.run_dir),
            "nginx": {
                "pid": self.nginx.process.pid if self.nginx.process else None,
                "config": str(self.nginx.config),
                "access_log": str(self.nginx.access_log),
            },
            "prometheus": {
                "pid": self.prometheus.process.pid if self.prometheus.process else None,
                "url": self.prometheus.url,
                "config": str(self.prometheus.config),
            },
            "replicas": [s.replica.view() for s in self.slots if s.replica is not None],
            "worker": self.worker.view(),
            "retired": self.retired,
            "rolls": self.rolls,
        }
        write_whole(self.run_dir / "cluster.json", json.dumps(state, indent=2))

    def banner(self) -> str:
        lines = [
            f"hotpath cluster: {len(self.slots)} replicas behind nginx on"
            f" http://127.0.0.1:{self.port}",
            f"  nginx       http://127.0.0.1:{self.port}  (/metrics not served)",
        ]
        for slot in self.slots:
            if (r := slot.replica) is not None:
                lines.append(f"  replica {r.index}   {r.url}  (pid {r.process.pid})")
        lines += [
            f"  worker      pid {self.worker.view()['pid']}, metrics on"
            f" http://{self.worker.address}/metrics (webhooks and mail)",
            f"  prometheus  {self.prometheus.url}  (scraping every replica and the worker)",
            f"  run dir     {self.run_dir}  (logs, configs, cluster.json)",
            "  SIGHUP rolls the replicas one at a time; Ctrl-C or SIGTERM stops everything.",
        ]
        if not self.env["REDIS_URL"]:
            lines.append("  no Redis: each replica limits, caches and learns revocations alone")
        return "\n".join(lines)


def run_cluster(
    settings: Settings,
    logger: FilteringBoundLogger,
    *,
    replicas: int,
    port: int,
    run_dir: Path | None,
    migrate: bool,
    prepare: bool,
) -> int:
    """Run until SIGINT or SIGTERM; 0 once everything it started has stopped."""
    from server.commands.tasks import prepare as prepare_database
    from server.db.devdb import resolve_database

    problems = startup_problems(settings)  # in development this makes the one signing key
    if problems:
        raise SettingsError(problems)
    # Several processes cannot share an embedded PostgreSQL: a real one, or nothing.
    settings = replace(settings, embedded_db=False)
    if prepare:
        settings = asyncio.run(prepare_database(settings, logger, users=DEMO_USERS))
    else:
        settings = asyncio.run(resolve_database(settings, logger))
    temporary = run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="hotpath-cluster-")) if run_dir is None else run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    cluster: Cluster | None = None
    try:
        cluster = Cluster(
            settings, replicas=replicas, port=port, run_dir=run_dir.resolve(), migrate=migrate
        )
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, cluster.on_signal)
        cluster.start()
        print(cluster.banner(), flush=True)
        cluster.run()
        return 0
    except ClusterError as error:
        print(f"cluster: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
        if temporary:
            shutil.rmtree(run_dir, ignore_errors=True)
