"""The deployment files are valid: Kubernetes manifests against the Kubernetes schemas
(kubernetes-validate, offline), the Dockerfile through hadolint, compose and systemd by shape."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _tool(name: str) -> str:
    # Dev dependencies install their command next to this interpreter.
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is missing: it is a dev dependency (make install)"
    return found


def test_kubernetes_manifests_pass_the_kubernetes_schemas() -> None:
    manifests = sorted((DEPLOY / "k8s").glob("*.yaml"))
    assert {m.name for m in manifests} >= {"deployment.yaml", "service.yaml", "hpa.yaml"}
    result = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", *map(str, manifests)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 5


def test_deployment_probes_and_memory_match_the_service() -> None:
    deployment = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    # docs/sizing.md: 3.85 GiB model + 8 slots x 196 MiB + 0.35 GiB = ~5.7 GiB
    assert container["resources"]["requests"]["memory"] == "6Gi"
    assert container["resources"]["limits"]["memory"] == "7Gi"


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in text and "/health" in text
    assert "USER 10001" in text
    assert 'VOLUME ["/models"]' in text


def test_compose_runs_two_replicas_behind_nginx_sharing_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"gptapi-1", "gptapi-2", "redis", "nginx"} <= set(services)
    for name in ("gptapi-1", "gptapi-2"):
        env = services[name]["environment"]
        assert env["GPTAPI_RATE_LIMIT_STORAGE"] == "redis://redis:6379"
        assert services[name]["volumes"] == ["../models:/models:ro"]
    upstream = compose["configs"]["nginx_gptapi"]["content"]
    assert "least_conn" in upstream and "proxy_buffering off" in upstream


def test_systemd_unit_restarts_caps_memory_and_reads_keys_from_a_file() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "gptapi.service")
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert service["MemoryMax"]
    assert service["User"] == "gptapi"
    assert service["EnvironmentFile"] == "/etc/gptapi/gptapi.env"
    assert service["LoadCredential"] == "keys.sha256:/etc/gptapi/keys.sha256"
    assert service["Environment"] == "GPTAPI_API_KEYS_FILE=%d/keys.sha256"
