"""``python -m server serve --with-worker``, as ``make run`` serves: a registration's mail is
written as an .eml file by the worker beside granian (no HOTPATH_SMTP_URL), its link follows
the port served (HOTPATH_PUBLIC_URL unset), the token in it verifies the account, and SIGTERM
stops both processes."""

from __future__ import annotations

import email
import email.policy
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from server.auth.keys import generate_dev_key
from server.commands.supervision import children
from tests.fixtures.servers import wait_until_live
from tests.fixtures.support import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_make_run_writes_the_mail_through_the_worker(migrated_db: str, tmp_path: Path) -> None:
    generate_dev_key(tmp_path / "jwt", "EdDSA")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOTPATH_")},
        "HOTPATH_ENV": "test",
        "DATABASE_URL": migrated_db,
        "REDIS_URL": "",
        "HOTPATH_SECRET_KEY": secrets.token_urlsafe(32),
        "HOTPATH_DATA_DIR": str(tmp_path),
        "HOTPATH_EMBEDDED_DB": "false",
        "HOTPATH_ARGON2_TIME_COST": "1",
        "HOTPATH_ARGON2_MEMORY_KIB": "1024",
        "HOTPATH_WEBHOOK_POLL_SECONDS": "0.1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port), "--with-worker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_live(base, serve)
        started = children(serve.pid)
        assert len(started) == 2, started  # granian and the worker
        address = f"ada-{secrets.token_hex(4)}@example.com"
        answer = httpx.post(
            base + "/v1/auth/register",
            json={
                "email": address,
                "password": "correct horse battery staple",
                "display_name": "A",
            },
        )
        assert answer.status_code == 202, answer.text
        mails = tmp_path / "mail"
        deadline = time.monotonic() + 30
        while not (found := sorted(mails.glob("*.eml")) if mails.exists() else []):
            assert time.monotonic() < deadline, "no mail written"
            time.sleep(0.1)
        (path,) = found
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert message["To"] == address
        body = str(message.get_content())
        assert f"POST {base}/v1/auth/email/verify\n" in body  # the port served, not 8000
        # README's quick start finds the token this way.
        (token,) = re.findall(r"^[A-Za-z0-9_-]{43}$", body, flags=re.MULTILINE)
        verified = httpx.post(base + "/v1/auth/email/verify", json={"token": token})
        assert verified.status_code == 204, verified.text
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in started), "left running"
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        log.close()
