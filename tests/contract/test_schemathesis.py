"""Schemathesis against the real server: every check and the examples, fuzzing and stateful
phases once each as a customer, a staff member and an administrator (the administrator's run
adds the coverage phase), against the /openapi.json of `python -m server serve` on a
throwaway database and Redis of each run's own (an administrator's run disables accounts; the
others' must not feel it).

No server error and no mismatch with the document is allowed, except the deliberate
behaviours listed, each with its reason, in schemathesis-exceptions.json (schemathesis'
baseline format: operation, check, failure and the signature it reports). Nothing may excuse
a server error. `make test-api` runs this; the number of cases per operation is
HOTPATH_SCHEMATHESIS_MAX_EXAMPLES (default below) and HOTPATH_SCHEMATHESIS_SEED replays a
run (each run prints its seed).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.db.migrate import migrate
from server.runtime.paths import MIGRATIONS_DIR
from tests.fixtures.databases import create_database, drop_database
from tests.fixtures.servers import running_servers
from tests.fixtures.support import ThrowawayRedis
from tests.fixtures.users import insert_user

pytestmark = [pytest.mark.contract, pytest.mark.slow]

EXCEPTIONS = Path(__file__).with_name("schemathesis-exceptions.json")
MAX_EXAMPLES = int(os.environ.get("HOTPATH_SCHEMATHESIS_MAX_EXAMPLES", "6"))
SEED = os.environ.get("HOTPATH_SCHEMATHESIS_SEED")
RUN_TIMEOUT = 480  # seconds for one role's run: a run that takes longer is a failure
# The coverage phase (boundary values of every parameter, most of a run's time) as the role
# every operation admits; the others' runs are about what each may and may not do.
PHASES = {
    "customer": "examples,fuzzing,stateful",
    "staff": "examples,fuzzing,stateful",
    "admin": "examples,coverage,fuzzing,stateful",
}
ROLES = tuple(PHASES)
NEVER_EXCUSED = {"not_a_server_error"}


def load_exceptions() -> list[dict[str, Any]]:
    document = json.loads(EXCEPTIONS.read_text())
    entries: list[dict[str, Any]] = document["entries"]
    return entries


def test_every_exception_is_explained_and_none_excuses_a_server_error() -> None:
    entries = load_exceptions()
    assert entries
    for entry in entries:
        assert entry["check"] not in NEVER_EXCUSED, entry
        assert len(entry.get("reason", "")) >= 20, f"give a reason: {entry}"
        assert {"operation", "check", "failure", "signature"} <= set(entry), entry


@pytest.fixture
def contract_server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A server on a database and a Redis of this run's own: (base URL, database URL, its
    data directory)."""
    redis = ThrowawayRedis()
    database_url = asyncio.run(create_database("contract"))
    try:
        asyncio.run(migrate(database_url, MIGRATIONS_DIR))
        redis.start()
        # A token outlives the run; a revoked one (logout, logout-all) is fetched again.
        env = {"HOTPATH_ACCESS_TOKEN_TTL": "900", "HOTPATH_LOG_LEVEL": "warning"}
        with running_servers(
            1, database_url=database_url, redis_url=redis.url, data_dir=tmp_path, extra_env=env
        ) as (base,):
            yield base, database_url, tmp_path
    finally:
        redis.kill()
        asyncio.run(drop_database(database_url))


def device_token(base: str, email: str, password: str) -> str:
    """A known device's token for the account, from one login of our own.

    Schemathesis sends a signed-in caller's guesses at the current password (password change,
    account deletion), and the server counts those against the account's login block, as it
    should: a stolen session gets no more guesses than a login would. Its own logins then
    present this token, as the owner's device would, and are counted on the device instead."""
    answer = httpx.post(f"{base}/v1/auth/login", json={"email": email, "password": password})
    answer.raise_for_status()
    token: str = answer.json()["device_token"]
    return token


def config(email: str, password: str, device: str) -> str:
    """schemathesis.toml: sign in through the API as a known device (again whenever an answer
    is a 401), and how many cases: MAX_EXAMPLES per operation, three times as many stateful
    sequences."""
    login = {"email": email, "password": password, "device_token": device}
    payload = ", ".join(f"{key} = {json.dumps(value)}" for key, value in login.items())
    return "\n".join(
        [
            # Hypothesis' health checks judge the generator (too many cases filtered for a
            # pattern, slow generation on a busy box), not the API: a failed one is no finding.
            'suppress-health-check = ["all"]',
            "",
            "[generation]",
            f"max-examples = {MAX_EXAMPLES}",
            "",
            "[phases.stateful.generation]",
            f"max-examples = {3 * MAX_EXAMPLES}",
            "",
            "[auth.dynamic.openapi.bearerAuth]",
            'path = "/v1/auth/login"',
            f"payload = {{ {payload} }}",
            'extract_selector = "/access_token"',
            "retry_on = [401]",
            "",
        ]
    )


def schemathesis_command(base: str, work: Path, role: str) -> list[str]:
    tool = Path(sys.executable).with_name("schemathesis")
    if not tool.exists():
        pytest.fail("schemathesis is not installed: it is in the dev extra (make install)")
    command = [
        str(tool),
        "--config-file",
        str(work / "schemathesis.toml"),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--phases",
        PHASES[role],
        # One worker: with several, hypothesis parses lambda sources in threads and CPython
        # 3.11.7 trips over its own AST recursion counter ("AST constructor recursion depth
        # mismatch", python/cpython#106905), a tool error that would fail the run.
        "--workers",
        "1",
        "--baseline",
        str(work / "exceptions.json"),
        "--report",
        "json,junit",
        "--report-dir",
        str(work / "report"),
        "--no-color",
    ]
    return command + (["--seed", SEED] if SEED else [])


def findings(report_dir: Path) -> list[str]:
    """Failures and errors from the JUnit report, one line each (the output says the rest)."""
    import xml.etree.ElementTree as ElementTree

    found = []
    for path in report_dir.glob("junit-*.xml"):
        for case in ElementTree.parse(path).iter("testcase"):  # noqa: S314
            for outcome in case:
                if outcome.tag in ("failure", "error"):
                    text = " ".join((outcome.text or "").split())
                    found.append(f"{case.get('name')}: {outcome.tag}: {text[:400]}")
    return found


@pytest.mark.timeout(RUN_TIMEOUT + 120)
@pytest.mark.parametrize("role", ROLES)
def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    contract_server: tuple[str, str, Path], role: str
) -> None:
    base, database_url, work = contract_server
    _, email, password = asyncio.run(insert_user(database_url, role))
    device = device_token(base, email, password)
    (work / "schemathesis.toml").write_text(config(email, password, device))
    shutil.copy(EXCEPTIONS, work / "exceptions.json")  # it must not rewrite ours
    done = subprocess.run(
        schemathesis_command(base, work, role),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    print(done.stdout[-6000:])
    [report_path] = (work / "report").glob("json-*.json")
    report = json.loads(report_path.read_text())
    problems = findings(work / "report")
    assert report["errors"] == [], problems
    assert report["failures"] == [], problems
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert report["complete"], report["stop_reason"]
    assert report["operations"]["tested"] == report["operations"]["selected"] > 0
