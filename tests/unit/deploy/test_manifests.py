"""The deployment files are valid: Kubernetes manifests against the Kubernetes schemas
(kubernetes-validate, offline), the Dockerfile through hadolint, compose and systemd by shape."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import REPO

ROOT = REPO
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
    assert result.stdout.count("passed") == 6


def test_deployment_probes_and_memory_match_the_service() -> None:
    deployment = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    # docs/sizing.md: 3.85 GiB model + 8 slots x 196 MiB + 0.35 GiB = ~5.7 GiB
    assert container["resources"]["requests"]["memory"] == "6Gi"
    assert container["resources"]["limits"]["memory"] == "7Gi"
    env = {e["name"]: e for e in container["env"]}
    assert env["GPTAPI_FORWARDED_ALLOW_IPS"]["value"]
    assert env["GPTAPI_DOCS_ENABLED"]["value"] == "false"
    assert "$(REDIS_PASSWORD)@" in env["GPTAPI_RATE_LIMIT_STORAGE"]["value"]
    grace = int(env["GPTAPI_SHUTDOWN_GRACE_S"]["value"])
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= grace + 30 + 10


def test_redis_needs_a_password_only_gptapi_reaches_it_and_it_evicts_when_full() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "redis.yaml").read_text()))
    redis = next(d for d in docs if d["kind"] == "Deployment")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--maxmemory-policy") + 1] == "volatile-lru"
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    sources = policy["spec"]["ingress"][0]["from"]
    assert sources == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gptapi"}}}]


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
    assert "non_idempotent" not in upstream  # a sent POST is never retried on another replica
    # Published on loopback only; X-Forwarded-For trusted from nginx's own address only.
    assert services["nginx"]["ports"] == ["127.0.0.1:8080:8080"]
    nginx_ip = services["nginx"]["networks"]["gptapi"]["ipv4_address"]
    for name in ("gptapi-1", "gptapi-2"):
        env = services[name]["environment"]
        assert env["GPTAPI_FORWARDED_ALLOW_IPS"] == nginx_ip
        assert env["GPTAPI_DOCS_ENABLED"] == "false"
        stop_s = int(services[name]["stop_grace_period"].removesuffix("s"))
        assert stop_s >= int(env["GPTAPI_SHUTDOWN_GRACE_S"]) + 30 + 10


def test_compose_provisions_prometheus_and_the_grafana_dashboard() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    job = prometheus["scrape_configs"][0]
    assert job["static_configs"][0]["targets"] == ["gptapi-1:8000", "gptapi-2:8000"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/gptapi_metrics_key"
    assert "gptapi_metrics_key" in services["prometheus"]["secrets"]
    grafana = services["grafana"]
    assert "./grafana/gptapi.json:/var/lib/grafana/dashboards/gptapi.json:ro" in grafana["volumes"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    provisioning = DEPLOY / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "gptapi.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


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
    assert service["Environment"].split() == [
        "GPTAPI_API_KEYS_FILE=%d/keys.sha256",
        "GPTAPI_DOCS_ENABLED=false",
    ]
    # Hardening the review asked for, and a stop budget above grace + scheduler join (30 + 30).
    assert service["UMask"] == "0077"
    assert service["CapabilityBoundingSet"] == ""
    assert service["SystemCallFilter"] == "@system-service"
    assert int(service["TimeoutStopSec"]) >= 60 + 10
