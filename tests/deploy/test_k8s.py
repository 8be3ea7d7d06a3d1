"""deploy/k8s/base: built as kustomize would (resources, then the image override) and validated
offline against Kubernetes' own schemas (kubernetes-validate, strict: an unknown field fails),
for the oldest and newest releases it claims; then what an operator relies on, each checked
against the setting it must agree with."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from server.commands.serve import WORKERS_KILL_TIMEOUT
from server.runtime.paths import ROOT

BASE = ROOT / "deploy" / "k8s" / "base"
DOCKERFILE = ROOT / "Dockerfile"
# The releases the base is written for: the oldest still maintained when it was written, and
# the newest kubernetes-validate knows.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
Manifest = dict[str, Any]
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:]*:[^/@]+@", re.IGNORECASE)


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return loaded


def build() -> list[Manifest]:
    """What `kustomize build` gives for this base: its resources, the image set."""
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in kustomization()["images"]}
    objects: list[Manifest] = []
    for resource in kustomization()["resources"]:
        for manifest in yaml.safe_load_all((BASE / resource).read_text()):
            for container in containers(manifest):
                container["image"] = images.get(container["image"], container["image"])
            objects.append(manifest)
    return objects


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    if manifest["kind"] in ("Deployment", "Job"):
        spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
        return spec
    if manifest["kind"] == "CronJob":
        job: dict[str, Any] = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return job
    return None


def containers(manifest: Manifest) -> Iterator[dict[str, Any]]:
    spec = pod_spec(manifest) or {}
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


@pytest.fixture(scope="module")
def objects() -> list[Manifest]:
    return build()


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def env_of(objects: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap", "hotpath")["data"]
    return data


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_the_kustomization_lists_every_manifest_and_nothing_else() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present, (listed - present, present - listed)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_for_kubernetes(objects: list[Manifest], version: str) -> None:
    for manifest in objects:
        where = f"{manifest['kind']}/{manifest['metadata']['name']} on {version}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where}: {error.message} at {list(error.path)}")


def test_the_image_is_the_project_release(objects: list[Manifest]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for manifest in objects:
        for container in containers(manifest):
            name, _, tag = container["image"].rpartition(":")
            assert tag == version, f"{container['name']}: {container['image']} is not {version}"
            # The backup job's image is this release with pg_dump added (deploy/backup/).
            image = "/hotpath-backup" if container["name"] == "backup" else "/hotpath"
            assert name.endswith(image), container["image"]


def test_one_worker_per_pod_serving_the_probes(objects: list[Manifest]) -> None:
    env = env_of(objects)
    assert env["HOTPATH_WORKERS"] == "1"
    (api,) = pod_spec(one(objects, "Deployment", "hotpath"))["containers"]  # type: ignore[index]
    assert api["args"] == ["serve"]
    ports = {port["name"]: port["containerPort"] for port in api["ports"]}
    assert ports == {"http": int(env["HOTPATH_PORT"])}, ports
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    # Unready (draining, PostgreSQL gone) must not get the pod killed: liveness is patient.
    live, ready = api["livenessProbe"], api["readinessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > (
        ready["periodSeconds"] * ready["failureThreshold"]
    )


def test_the_pre_stop_drain_matches_hotpath_drain_seconds(objects: list[Manifest]) -> None:
    drain = float(env_of(objects)["HOTPATH_DRAIN_SECONDS"])
    spec = pod_spec(one(objects, "Deployment", "hotpath"))
    assert spec is not None
    (api,) = spec["containers"]
    command = api["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    assert float(command[1]) == drain, f"preStop sleeps {command[1]} s, the drain is {drain} s"
    needed = float(command[1]) + drain + WORKERS_KILL_TIMEOUT
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > needed, f"SIGKILL after {grace} s, before preStop + drain + kill timeout"


def test_pods_run_locked_down(objects: list[Manifest]) -> None:
    uid = re.search(r"^USER (\d+):", DOCKERFILE.read_text(), re.MULTILINE)
    assert uid is not None
    for manifest in objects:
        spec = pod_spec(manifest)
        if spec is None:
            continue
        kind = manifest["kind"]
        assert spec["automountServiceAccountToken"] is False, kind
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, kind
        assert pod["runAsUser"] == int(uid.group(1)), kind
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", kind
        for container in containers(manifest):
            where = f"{kind}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            resources = container["resources"]
            for need in ("cpu", "memory"):
                assert need in resources["requests"], f"{where}: no {need} request"
            assert "memory" in resources["limits"], f"{where}: no memory limit"


def test_the_read_only_root_leaves_tmp_writable(objects: list[Manifest]) -> None:
    for manifest in objects:
        spec = pod_spec(manifest)
        if spec is None:
            continue
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        memory = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in memory, f"{where}: /tmp is not an emptyDir"


def test_signing_keys_reach_the_pod_unreadable_to_others(objects: list[Manifest]) -> None:
    env = env_of(objects)
    spec = pod_spec(one(objects, "Deployment", "hotpath"))
    assert spec is not None
    (init,) = spec["initContainers"]
    (api,) = spec["containers"]
    keys_dir = env["HOTPATH_JWT_KEYS_DIR"]
    api_mounts = {m["mountPath"]: m for m in api["volumeMounts"]}
    assert api_mounts[keys_dir]["readOnly"] is True
    assert "chmod 0400" in init["command"][-1], "hotpath refuses a group-readable key"
    assert keys_dir in init["command"][-1]


def test_the_service_the_budget_and_the_autoscaler_find_the_pods(objects: list[Manifest]) -> None:
    deployment = one(objects, "Deployment", "hotpath")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    service = one(objects, "Service", "hotpath")
    assert matches(service["spec"]["selector"], labels)
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    budget = one(objects, "PodDisruptionBudget")
    assert matches(budget["spec"]["selector"]["matchLabels"], labels)
    assert budget["spec"]["maxUnavailable"] == 1
    scaler = one(objects, "HorizontalPodAutoscaler")
    assert scaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaler["spec"]["minReplicas"] >= 2, "one pod is no replica set"
    shares = int(env_of(objects)["HOTPATH_RATE_LIMIT_REPLICAS"])
    assert shares == scaler["spec"]["minReplicas"], (
        f"HOTPATH_RATE_LIMIT_REPLICAS {shares} is not minReplicas"
        f" {scaler['spec']['minReplicas']}: during a Redis outage the pods would admit less"
        " than the limit"
    )


def test_the_pools_fit_postgres_at_the_most_replicas(objects: list[Manifest]) -> None:
    """With PostgreSQL's default max_connections (100) and its 3 superuser slots."""
    pool = int(env_of(objects)["HOTPATH_DB_POOL_MAX"])
    most = one(objects, "HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    worker = one(objects, "Deployment", "hotpath-worker")
    (container,) = pod_spec(worker)["containers"]  # type: ignore[index]
    worker_pool = int(
        next(v["value"] for v in container["env"] if v["name"] == "HOTPATH_DB_POOL_MAX")
    )
    workers = worker["spec"]["replicas"]
    needed = pool * most + worker_pool * workers + 2  # the migration job's and an operator's psql
    assert needed <= 100 - 3, (
        f"{most} pods x {pool} + {workers} workers x {worker_pool} connections = {needed} > 97"
    )


def test_the_migration_job_runs_migrate_once(objects: list[Manifest]) -> None:
    job = one(objects, "Job", "hotpath-migrate")
    spec = pod_spec(job)
    assert spec is not None
    (container,) = spec["containers"]
    assert container["args"] == ["migrate"]
    assert spec["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_network_policies_admit_only_the_proxy_and_prometheus(objects: list[Manifest]) -> None:
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    api = policies["hotpath-api"]
    pod_labels = one(objects, "Deployment", "hotpath")["spec"]["template"]["metadata"]["labels"]
    assert matches(api["podSelector"]["matchLabels"], pod_labels)
    assert set(api["policyTypes"]) == {"Ingress", "Egress"}
    (rule,) = api["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["http"]
    assert all("namespaceSelector" in peer for peer in rule["from"])
    egress = {p["port"] for r in api["egress"] for p in r["ports"]}
    assert {53, 5432, 6379} <= egress, egress
    migrate = policies["hotpath-migrate"]
    job_labels = one(objects, "Job")["spec"]["template"]["metadata"]["labels"]
    assert matches(migrate["podSelector"]["matchLabels"], job_labels)
    assert migrate["ingress"] == []


def test_no_secret_in_the_config_map_and_every_secret_is_named_where_it_is_made(
    objects: list[Manifest],
) -> None:
    """kustomization.yaml tells how to create each Secret and key the pods refer to."""
    env = env_of(objects)
    for key in env:
        assert not re.search(r"PASSWORD|SECRET|TOKEN|SMTP_URL", key), f"{key} is a secret"
    assert not URL_PASSWORD.match(env["DATABASE_URL"]), "a password in DATABASE_URL"
    howto = (BASE / "kustomization.yaml").read_text()
    for manifest in objects:
        spec = pod_spec(manifest) or {}
        for container in containers(manifest):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert f"secret generic {ref['name']} " in howto, ref["name"]
                    assert f"--from-literal={ref['key']}=" in howto, ref["key"]
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert f"secret generic {volume['secret']['secretName']} " in howto, volume


def test_the_worker_runs_and_only_prometheus_reaches_its_metrics(objects: list[Manifest]) -> None:
    """Without a scrape of the worker the outbox backlog alert can never fire: its pods serve
    the metrics on a named port, the policy lets the monitoring namespace reach that port only,
    and the scrape job in docs/operations.md keeps exactly these pods and that port."""
    worker = one(objects, "Deployment", "hotpath-worker")
    spec = pod_spec(worker)
    assert spec is not None
    (container,) = spec["containers"]
    assert container["args"] == ["worker"]
    env = {v["name"]: v.get("value") for v in container["env"]}
    (port,) = container["ports"]
    assert port["name"] == "metrics"
    assert env["HOTPATH_WORKER_METRICS_PORT"] == str(port["containerPort"])
    assert env_of(objects)["HOTPATH_HOST"] == "0.0.0.0"  # noqa: S104 (reachable from outside the pod)
    assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    # SIGTERM gives attempts in flight HOTPATH_WEBHOOK_TIMEOUT (10 s) + 1 s.
    assert spec["terminationGracePeriodSeconds"] > 10 + 1
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert worker["spec"]["selector"]["matchLabels"] == labels
    service = one(objects, "Service", "hotpath")
    assert not matches(service["spec"]["selector"], labels), "the API's Service would route here"
    policy = next(
        o["spec"]
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "hotpath-worker"
    )
    assert matches(policy["podSelector"]["matchLabels"], labels)
    (rule,) = policy["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["metrics"]
    assert [peer["namespaceSelector"] for peer in rule["from"]] == [
        {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    ]
    egress = {p["port"] for r in policy["egress"] for p in r["ports"]}
    assert {53, 5432, 443} <= egress, egress
    howto = (ROOT / "docs" / "operations.md").read_text()
    assert "- job_name: worker" in howto
    assert "regex: worker, action: keep" in howto
    assert "regex: metrics, action: keep" in howto
