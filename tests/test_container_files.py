"""Offline checks of the container files: Dockerfile (hadolint + content) and compose.yaml
(compose-spec schema + content). No docker engine is needed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"

SECRET_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}")
ANY_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:[:?\-+][^}]*)?\}")
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:]*:([^/@]+)@", re.IGNORECASE)
ROOT_USERS = {"root", "0"}


def tool(name: str) -> str:
    """A dev tool installed beside this interpreter (the virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install the project's dev extra")
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuations joined, comments dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        keyword, _, args = logical.partition(" ")
        yield keyword.upper(), args.strip()
    if pending.strip():
        keyword, _, args = pending.strip().partition(" ")
        yield keyword.upper(), args.strip()


def stages(text: str) -> list[Stage]:
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            image = re.sub(
                r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                lambda m: global_args.get(m.group(1), m.group(0)),
                words[0],
            )
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(image, name))
        elif not result:
            if keyword == "ARG":
                key, _, default = args.partition("=")
                global_args[key.strip()] = default.strip().strip("\"'")
        else:
            result[-1].instructions.append((keyword, args))
    return result


@pytest.fixture(scope="module")
def dockerfile_stages() -> list[Stage]:
    return stages(DOCKERFILE.read_text())


def image_tag(image: str) -> str | None:
    """The tag of an image reference (None when it has none); digests count as pinned."""
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def test_hadolint_reports_nothing() -> None:
    result = run(tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_on_one_pinned_base(dockerfile_stages: list[Stage]) -> None:
    assert len(dockerfile_stages) >= 2
    builder, final = dockerfile_stages[0], dockerfile_stages[-1]
    assert builder.name is not None
    assert final.image == builder.image, "build and run on the same base image"
    # The runtime stage takes only the virtualenv from the builder, not the source tree.
    copies = final.all("COPY")
    assert any(c.startswith(f"--from={builder.name}") and "/opt/venv" in c for c in copies)
    assert not any(re.search(r"(^|\s)\.\s", c + " ") for c in copies if "--from" not in c)


def test_images_are_tagged_and_never_latest(dockerfile_stages: list[Stage]) -> None:
    names = {s.name for s in dockerfile_stages if s.name}
    for stage in dockerfile_stages:
        if stage.image in names:
            continue
        assert "$" not in stage.image, f"unresolved ARG in FROM {stage.image}"
        tag = image_tag(stage.image)
        assert tag is not None, f"untagged base image {stage.image}"
        assert tag != "latest", stage.image


def test_final_stage_runs_as_a_fixed_non_root_uid(dockerfile_stages: list[Stage]) -> None:
    user = dockerfile_stages[-1].last("USER")
    assert user is not None, "the final stage never sets USER, so it runs as root"
    uid, _, gid = user.partition(":")
    assert uid not in ROOT_USERS
    assert gid not in ROOT_USERS
    # Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
    assert uid.isdigit(), uid
    assert int(uid) >= 1000


def test_final_stage_healthcheck_probes_livez(dockerfile_stages: list[Stage]) -> None:
    healthcheck = dockerfile_stages[-1].last("HEALTHCHECK")
    assert healthcheck is not None
    assert "/livez" in healthcheck
    for option in ("--interval=", "--timeout=", "--retries="):
        assert option in healthcheck
    assert "curl" not in healthcheck, "no curl in slim images"
    assert "wget" not in healthcheck, "no wget in slim images"


def test_final_stage_process_contract(dockerfile_stages: list[Stage]) -> None:
    final = dockerfile_stages[-1]
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None
    assert cmd is not None
    assert json.loads(entrypoint) == ["python", "-m", "server"]  # exec form: gets SIGTERM
    assert json.loads(cmd) == ["serve"]
    assert final.last("STOPSIGNAL") == "SIGTERM"
    assert "8000" in (final.last("EXPOSE") or "").split()
    assert final.last("WORKDIR") == "/app"
    env = " ".join(final.all("ENV"))
    for setting in (
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
        "HOTPATH_ENV=production",
        "HOTPATH_HOST=0.0.0.0",
    ):
        assert setting in env


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".git", ".venv", ".devdata", ".env", "bench/results", "node_modules"):
        assert required in patterns, required


# --------------------------------------------------------------------------- compose.yaml


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {key: (value if sep else None) for key, sep, value in pairs}
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


def test_compose_matches_the_compose_spec() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_the_four_services(compose: dict[str, Any]) -> None:
    assert {"postgres", "redis", "migrate", "api"} <= set(compose["services"])


def test_migrations_finish_before_the_api_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api, migrate = services["api"], services["migrate"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["command"] == ["migrate"]
    assert str(migrate["restart"]) == "no"
    assert api["command"] == ["serve"]
    for name in ("postgres", "redis", "api"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_compose_holds_no_plaintext_secret(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            where = f"{name}.environment.{key}"
            if re.search(r"PASSWORD|SECRET", key, re.IGNORECASE):
                # Required and never defaulted: compose stops when it is missing.
                assert value is not None, where
                assert SECRET_REFERENCE.fullmatch(value), where
            elif re.search(r"TOKEN|API_?KEY|PRIVATE", key, re.IGNORECASE):
                # Optional secrets: passed through from the host or referenced, never inline.
                assert value is None or ANY_REFERENCE.fullmatch(value), where
            if value and (match := URL_PASSWORD.match(value)):
                assert SECRET_REFERENCE.fullmatch(match.group(1)), f"password in {where}"


def test_published_ports_bind_to_loopback(compose: dict[str, Any]) -> None:
    published = 0
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", name
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
    assert compose["services"]["api"]["ports"] == ["127.0.0.1:8000:8000"]
    assert published == 1, "only the API is published"


def test_api_container_is_locked_down(compose: dict[str, Any]) -> None:
    for name in ("api", "migrate"):
        service = compose["services"][name]
        assert service.get("read_only") is True, name
        assert "ALL" in service.get("cap_drop", []), name
        assert any(o.startswith("no-new-privileges") for o in service.get("security_opt", []))
        assert "/tmp" in service.get("tmpfs", []), name
    assert "/livez" in " ".join(compose["services"]["api"]["healthcheck"]["test"])


def test_compose_images_are_tagged_and_never_latest(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        if image is None:
            assert "build" in service, name
            continue
        tag = image_tag(image)
        assert tag is not None, f"{name}: {image}"
        assert tag != "latest", f"{name}: {image}"
