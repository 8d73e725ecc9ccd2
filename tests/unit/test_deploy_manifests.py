"""deploy/: every Kubernetes manifest validates offline against the Kubernetes JSON schemas
(kubernetes-validate) or, for KEDA's ScaledObject, the schema vendored beside them; the
pieces agree with each other (probes on the metrics port, KEDA on the worker's group,
PDBs on the pods' labels); the Grafana dashboard queries metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.33"
SCHEMAS = DEPLOY / "k8s" / "schemas"


def _documents() -> list[dict[str, Any]]:
    return [d for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
            for d in yaml.safe_load_all(path.read_text()) if d]


def _validate(doc: dict[str, Any]) -> None:
    group = doc["apiVersion"].split("/")[0]
    vendored = SCHEMAS / f"{group}-{doc['apiVersion'].split('/')[-1]}-{doc['kind']}.json"
    if vendored.exists():
        jsonschema.validate(doc, json.loads(vendored.read_text()))
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


@pytest.mark.parametrize("doc", _documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid(doc: dict[str, Any]) -> None:
    _validate(doc)


def test_the_validator_refuses_a_broken_manifest() -> None:
    worker = _one("Deployment", "accounting-sync-worker")
    broken = json.loads(json.dumps(worker))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(broken)
    keda = json.loads(json.dumps(_one("ScaledObject", "accounting-sync-worker")))
    keda["spec"]["maxReplicas"] = 3
    with pytest.raises(jsonschema.ValidationError):
        _validate(keda)


def test_worker_probes_scaling_and_budgets_agree() -> None:
    config = _one("ConfigMap", "accounting-sync")["data"]
    worker = _one("Deployment", "accounting-sync-worker")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    port = int(config["METRICS_PORT"])
    assert container["ports"] == [{"name": "metrics", "containerPort": port}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz/ready"
    assert container["resources"]["requests"]["cpu"] and \
        container["resources"]["requests"]["memory"]

    keda = _one("ScaledObject", "accounting-sync-worker")
    assert keda["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    trigger = keda["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == config["CONSUMER_GROUP"]
    assert {"bootstrapServers", "lagThreshold"} <= set(trigger["metadata"])
    assert trigger["metadata"]["allowIdleConsumers"] == "false"

    labels = worker["spec"]["template"]["metadata"]["labels"]
    pdb = _one("PodDisruptionBudget", "accounting-sync-worker")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    control = _one("Deployment", "accounting-sync-control")
    pdb = _one("PodDisruptionBudget", "accounting-sync-control")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= \
        control["spec"]["template"]["metadata"]["labels"].items()


def test_dashboard_queries_metrics_the_code_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "accounting-sync.json").read_text())
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("throughput", "lag", "statuses by code", "latency", "429",
                  "quota", "dead letters"):
        assert topic in titles, topic
    source = "\n".join(p.read_text() for folder in ("consumers", "providers", "service")
                       for p in (DEPLOY.parent / folder).rglob("*.py"))
    exported = set(re.findall(r'"(bc_[a-z_]+)"', source))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for metric in re.findall(r"\b(bc_[a-z_]+)", target["expr"]):
                base = re.sub(r"_(bucket|count|sum)$", "", metric)
                assert base in exported or base.removesuffix("_total") in exported \
                    or f"{base}_total" in exported, (metric, panel["title"])
