"""Offline checks of the container files: Dockerfile (hadolint + content) and compose.yaml
(compose-spec schema + content). No docker engine is needed."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
MAKEFILE = ROOT / "Makefile"
PYPROJECT = ROOT / "pyproject.toml"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
DEV_LOCK = ROOT / "requirements" / "dev.txt"
BUILD_LOCK = ROOT / "requirements" / "build.txt"
LOCKS = (RUNTIME_LOCK, DEV_LOCK, BUILD_LOCK)

SECRET_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}")
ANY_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:[:?\-+][^}]*)?\}")
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:]*:([^/@]+)@", re.IGNORECASE)
ROOT_USERS = {"root", "0"}
# An exact release in an image tag: "17.9-alpine3.23", "3.11.14-slim-bookworm", "v2.1.0".
TAG_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)(?:[-_+].*)?")
# How many numbers an exact release of an image has; 3 (x.y.z) unless named here.
RELEASE_PARTS = {"postgres": 2}
SHA256_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# make lock keeps the extras a pin was asked with (uv's --no-strip-extras): pip's hash-checking
# mode refuses a dependency's "name[extra]>=x" it finds no "name[extra]==y" line for, once a
# newer release of it is on the index (cachecontrol[filecache] for pip-audit, 2026-12-07).
PIN_EXTRAS = re.compile(r"\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\]$")


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


def unpinned(image: str) -> str | None:
    """Why an image reference is not pinned to one release (None when it is): a digest pins
    the bytes; otherwise the tag must name a whole version, never `latest` or a bare major."""
    if "@sha256:" in image:
        return None
    tag = image_tag(image)
    if tag is None:
        return "no tag"
    match = TAG_VERSION.fullmatch(tag)
    if match is None:
        return f"tag {tag!r} names no version"
    repository = image.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    parts = RELEASE_PARTS.get(repository, 3)
    if len(match.group(1).split(".")) < parts:
        return f"tag {tag!r} floats: an exact {repository} release has {parts} numbers"
    return None


def test_unpinned_tells_exact_tags_from_floating_ones() -> None:
    for exact in (
        "postgres:17.9-alpine3.23",
        "postgres:17.9",
        "redis:7.4.11-alpine3.21",
        "python:3.11.14-slim-bookworm",
        "ghcr.io/org/tool:v2.1.0",
        "redis@sha256:" + "a" * 64,
    ):
        assert unpinned(exact) is None, exact
    for floating in (
        "postgres:17-alpine",
        "postgres:17",
        "redis:7-alpine",
        "redis:7.4-alpine",
        "redis:latest",
        "redis",
        "python:3.11-slim",
        "postgres:alpine",
    ):
        assert unpinned(floating) is not None, floating


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
        assert unpinned(stage.image) is None, f"{stage.image}: {unpinned(stage.image)}"


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


@dataclass
class PipCall:
    position: int  # the instruction's index in its stage
    subcommand: str  # install, wheel, check...
    args: list[str]

    @property
    def requirement_files(self) -> list[str]:
        files = []
        for i, arg in enumerate(self.args):
            if arg in ("-r", "--requirement") and i + 1 < len(self.args):
                files.append(self.args[i + 1])
            elif arg.startswith("--requirement="):
                files.append(arg.partition("=")[2])
            elif arg.startswith("-r") and len(arg) > 2:
                files.append(arg[2:])
        return files

    @property
    def targets(self) -> list[str]:
        """The positional arguments: what is installed or built besides -r files."""
        found, skip = [], False
        for arg in self.args:
            if skip:
                skip = False
            elif arg in ("-r", "--requirement", "-c", "--constraint", "-w", "--wheel-dir"):
                skip = True
            elif not arg.startswith("-"):
                found.append(arg)
        return found


def pip_calls(stage: Stage) -> list[PipCall]:
    """Every pip invocation in the stage's RUN instructions (shell form), in order."""
    calls = []
    for position, (keyword, args) in enumerate(stage.instructions):
        if keyword != "RUN" or args.startswith("["):
            continue
        lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        commands: list[list[str]] = [[]]
        for token in lexer:  # quotes respected: a ; inside python -c "..." splits nothing
            if token in ("&&", "||", ";", "|", "&"):
                commands.append([])
            else:
                commands[-1].append(token)
        for argv in commands:
            if len(argv) >= 4 and re.fullmatch(r"(.*/)?python[0-9.]*", argv[0]):
                rest = argv[3:] if argv[1:3] == ["-m", "pip"] else []
            elif len(argv) >= 2 and re.fullmatch(r"(.*/)?pip[0-9.]*", argv[0]):
                rest = argv[1:]
            else:
                continue
            if rest:
                calls.append(PipCall(position, rest[0], rest[1:]))
    return calls


def copied_before(stage: Stage, position: int, path: str) -> bool:
    """A COPY from the build context before `position` brings `path` (or its folder) in."""
    for keyword, args in stage.instructions[:position]:
        if keyword == "COPY" and "--from" not in args:
            sources = args.split()[:-1]
            if any(path == src or path.startswith(src.rstrip("/") + "/") for src in sources):
                return True
    return False


def test_dockerfile_installs_the_runtime_lock_with_hashes(dockerfile_stages: list[Stage]) -> None:
    builder = dockerfile_stages[0]
    calls = pip_calls(builder)
    runtime = "requirements/runtime.txt"
    locked = [c for c in calls if c.subcommand == "install" and runtime in c.requirement_files]
    assert locked, f"the builder never runs pip install -r {runtime}"
    for call in locked:
        assert "--require-hashes" in call.args, call.args
        assert copied_before(builder, call.position, runtime), f"{runtime} is not copied in"
    # Then hotpath itself, with --no-deps: nothing is resolved past the lock.
    project = [
        c
        for c in calls
        if c.subcommand == "install"
        and any(t == "." or re.fullmatch(r".*/hotpath-.*\.whl", t) for t in c.targets)
    ]
    assert project, "the builder never installs hotpath itself"
    for call in project:
        assert "--no-deps" in call.args, call.args
        assert call.position >= locked[0].position, "hotpath installed before its locked deps"


def test_dockerfile_resolves_nothing_outside_a_lock(dockerfile_stages: list[Stage]) -> None:
    """Every pip install either takes hashed lock files only or installs with --no-deps, and
    hotpath's wheel is built by the locked backend (no build isolation fetching hatchling)."""
    for stage in dockerfile_stages:
        for call in pip_calls(stage):
            if call.subcommand not in ("install", "wheel"):
                continue
            if "--require-hashes" in call.args:
                assert call.requirement_files, call.args
                assert not call.targets, f"unhashed targets beside the lock: {call.args}"
                for file in call.requirement_files:
                    assert (ROOT / file).resolve().parent == RUNTIME_LOCK.parent, file
            else:
                assert "--no-deps" in call.args, f"resolves outside the lock: {call.args}"
            if call.subcommand == "wheel" or "." in call.targets:
                assert "--no-build-isolation" in call.args, call.args
    builder_files = {f for c in pip_calls(dockerfile_stages[0]) for f in c.requirement_files}
    assert "requirements/build.txt" in builder_files, "the build backend is not installed locked"


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


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    services = {"postgres", "redis", "migrate", "api", "nginx", "prometheus"}
    assert services <= set(compose["services"])


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
    assert "ports" not in compose["services"]["api"], "the replicas are reached through nginx"
    assert compose["services"]["nginx"]["ports"] == ["127.0.0.1:8000:8080"]
    assert compose["services"]["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert compose["services"]["grafana"]["ports"] == ["127.0.0.1:3000:3000"]
    assert published == 3, "only nginx, Prometheus and Grafana are published"


def test_api_container_is_locked_down(compose: dict[str, Any]) -> None:
    for name in ("api", "migrate", "nginx", "prometheus"):
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


def test_compose_pulled_images_are_pinned_to_exact_versions(compose: dict[str, Any]) -> None:
    """Images compose pulls name one release (server and base), never a floating major; the
    ones it builds (`build: .`) carry the local name of that build instead, and so may a
    service that runs the image another one builds (the worker runs the api's)."""
    built = {s.get("image") for s in compose["services"].values() if "build" in s}
    pulled = 0
    for name, service in compose["services"].items():
        if "build" in service or service.get("image") in built:
            continue
        pulled += 1
        image = service["image"]
        assert unpinned(image) is None, f"{name}: {image}: {unpinned(image)}"
    assert pulled >= 2, "postgres and redis are pulled"


# --------------------------------------------------------------------------- lock files


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: tuple[str, ...]


def read_lock(path: Path) -> tuple[dict[str, Pin], list[str]]:
    """A hashed requirements file: {canonical name: pin}, and every line that is not one."""
    pins: dict[str, Pin] = {}
    strays: list[str] = []
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical = (logical + line).strip()
        if logical:
            first, *rest = logical.split()
            name, sep, version = first.partition("==")
            name = PIN_EXTRAS.sub("", name)
            hashes = tuple(r for r in rest if SHA256_HASH.fullmatch(r))
            if sep and PACKAGE_NAME.fullmatch(name) and len(hashes) == len(rest):
                pins[canonicalize_name(name)] = Pin(version, hashes)
            else:
                strays.append(logical)
        logical = ""
    return pins, strays


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())


@pytest.fixture(scope="module")
def locks() -> dict[str, dict[str, Pin]]:
    return {path.name: read_lock(path)[0] for path in LOCKS}


def assert_pinned(requirement: str, pins: dict[str, Pin], lock: str) -> None:
    """The requirement is in the lock at a version its specifier allows, and so is everything
    the installed distribution needs for the extras it asks for (granian[uvloop] -> uvloop)."""
    req = Requirement(requirement)
    name = canonicalize_name(req.name)
    assert name in pins, f"{req.name} (pyproject.toml) is not pinned in {lock}: run make lock"
    version = pins[name].version
    assert req.specifier.contains(version, prereleases=True), (
        f"{lock} pins {req.name}=={version}, outside {req.specifier}: run make lock"
    )
    try:
        needs = importlib.metadata.requires(req.name) or []
    except importlib.metadata.PackageNotFoundError:
        return  # not installed here: the lock's own resolution is all there is to go on
    for need in map(Requirement, needs):
        wanted = need.marker is None or any(
            need.marker.evaluate({"extra": extra}) for extra in (*req.extras, "")
        )
        if wanted and canonicalize_name(need.name) != name:
            assert canonicalize_name(need.name) in pins, f"{need} ({requirement}) not in {lock}"


@pytest.mark.parametrize("path", LOCKS, ids=lambda p: p.name)
def test_lock_pins_every_package_with_hashes(path: Path) -> None:
    pins, strays = read_lock(path)
    # No unpinned line, no editable, no index or find-links of the machine that locked it.
    assert not strays, f"{path.name}: lines that are not name==version with hashes: {strays}"
    assert pins
    for name, pin in pins.items():
        assert pin.hashes, f"{path.name}: {name} has no --hash"
    header = path.read_text().split("\n", 3)[:3]
    assert any("make lock" in line for line in header), f"{path.name}: no `make lock` header"
    assert any("uv pip compile" in line for line in header), f"{path.name}: no command header"


def test_runtime_lock_pins_every_project_dependency(
    pyproject: dict[str, Any], locks: dict[str, dict[str, Pin]]
) -> None:
    for requirement in pyproject["project"]["dependencies"]:
        assert_pinned(requirement, locks[RUNTIME_LOCK.name], RUNTIME_LOCK.name)


def test_dev_lock_pins_every_dependency_and_dev_dependency(
    pyproject: dict[str, Any], locks: dict[str, dict[str, Pin]]
) -> None:
    project = pyproject["project"]
    for requirement in (*project["dependencies"], *project["optional-dependencies"]["dev"]):
        assert_pinned(requirement, locks[DEV_LOCK.name], DEV_LOCK.name)


def test_dev_lock_runs_the_versions_the_image_ships(locks: dict[str, dict[str, Pin]]) -> None:
    runtime, dev = locks[RUNTIME_LOCK.name], locks[DEV_LOCK.name]
    differ = {n: (p.version, dev[n].version) for n, p in runtime.items() if n in dev}
    differ = {n: versions for n, versions in differ.items() if versions[0] != versions[1]}
    assert set(runtime) <= set(dev), f"missing from dev.txt: {set(runtime) - set(dev)}"
    assert not differ, f"runtime.txt and dev.txt disagree: {differ}"


def test_build_lock_pins_the_build_backend(
    pyproject: dict[str, Any], locks: dict[str, dict[str, Pin]]
) -> None:
    for requirement in pyproject["build-system"]["requires"]:
        assert_pinned(requirement, locks[BUILD_LOCK.name], BUILD_LOCK.name)


def test_locks_target_the_image_python(dockerfile_stages: list[Stage]) -> None:
    """The locks are resolved for the Python the image runs (and the dev box: 3.11)."""
    tag = image_tag(dockerfile_stages[-1].image) or ""
    image_python = ".".join(tag.split("-")[0].split(".")[:2])
    for path in LOCKS:
        header = path.read_text().split("\n", 3)[:3]
        flags = " ".join(header)
        assert f"--python-version {image_python}" in flags, f"{path.name}: {header}"
        assert "--python-platform x86_64-" in flags, f"{path.name}: {header}"


def test_make_install_uses_the_dev_lock_with_hashes() -> None:
    text = MAKEFILE.read_text()
    rule = re.search(r"^\$\(STAMP\):(.*)\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert rule is not None, "no $(STAMP) rule in the Makefile"
    prerequisites, recipe = rule.group(1), rule.group(2)
    assert "dev.txt" in prerequisites, "a changed lock must reinstall"
    assert re.search(r"pip install .*--require-hashes .*-r \S*dev\.txt", recipe), recipe
    project = [line for line in recipe.splitlines() if re.search(r"pip install .*-e \.", line)]
    assert project, recipe
    assert all("--no-deps" in line for line in project), project
    assert re.search(r"^lock:", text, re.MULTILINE), "no make lock target"
