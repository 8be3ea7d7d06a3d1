"""The backup schedule as shipped: compose's backup service and the Kubernetes CronJob run
python -m server backup often enough that HotpathBackupTooOld fires only after two missed runs,
keep the same number of backups, write to storage of their own, and run the backup image
(deploy/backup/Dockerfile: hadolint-clean, built on hotpath's image)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from server.runtime.paths import ROOT
from tests.deploy.test_k8s import Manifest, build, one, pod_spec

RULES = ROOT / "deploy" / "prometheus" / "rules" / "backups.yml"
COMPOSE = ROOT / "compose.yaml"
BACKUP_DOCKERFILE = ROOT / "deploy" / "backup" / "Dockerfile"
KEEP = "28"


def alert_after_seconds() -> int:
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    (rule,) = group["rules"]
    found = re.search(r"> (\d+) \* 3600$", rule["expr"])
    assert found is not None, rule["expr"]
    return int(found[1]) * 3600


def compose_backup() -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]["backup"]
    return service


def test_compose_backs_up_every_6_hours_into_a_volume_of_its_own() -> None:
    service = compose_backup()
    (loop,) = service["command"]
    assert "python -m server backup --to /backups" in loop
    assert f"--keep {KEEP}" in loop
    sleep = re.search(r"sleep (\d+)", loop)
    assert sleep is not None
    assert 2 * int(sleep[1]) < alert_after_seconds(), "the alert must wait for two missed runs"
    assert "backups:/backups" in service["volumes"]
    assert "backups" in yaml.safe_load(COMPOSE.read_text())["volumes"]
    assert service["build"]["dockerfile"] == "deploy/backup/Dockerfile"
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert service["read_only"] is True
    assert "ALL" in service["cap_drop"]


def test_the_cronjob_backs_up_every_6_hours_onto_its_claim() -> None:
    objects: list[Manifest] = build()
    cron = one(objects, "CronJob", "hotpath-backup")
    minute, hour, *rest = cron["spec"]["schedule"].split()
    assert minute.isdigit(), cron["spec"]
    assert (hour, rest) == ("*/6", ["*", "*", "*"]), cron["spec"]
    assert alert_after_seconds() > 2 * 6 * 3600
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = pod_spec(cron)
    assert spec is not None
    (container,) = spec["containers"]
    assert container["args"] == ["backup", "--to", "/backups", "--keep", KEEP]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    claim = volumes[mounts["/backups"]]["persistentVolumeClaim"]["claimName"]
    one(objects, "PersistentVolumeClaim", claim)
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsUser"]
    secrets = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert "PGPASSWORD" in secrets
    policy = one(objects, "NetworkPolicy", "hotpath-backup")["spec"]
    labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"] == labels
    assert policy["ingress"] == []
    assert {p["port"] for r in policy["egress"] for p in r["ports"]} == {53, 5432}


def test_the_backup_image_is_hotpaths_with_pg_dump_17() -> None:
    text = BACKUP_DOCKERFILE.read_text()
    assert re.search(r"^ARG HOTPATH_IMAGE=hotpath:local$", text, re.MULTILINE)
    assert "postgresql-client-17" in text
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert (
        compose_backup()["build"]["args"]["HOTPATH_IMAGE"]
        in compose_backup()["build"]["additional_contexts"]
    )
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(BACKUP_DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
