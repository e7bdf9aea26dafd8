"""deploy/k8s: schema-valid manifests; probes, resources, settings and scaling fit tickwatch."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tickwatch.settings import Settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"  # oldest Kubernetes the manifests must be valid for
WORKERS = {"replay-server", "producer", "features", "score", "sink"}
SCALED_BY_PARTITIONS = {"features", "score"}
COMMANDS = {
    "replay-server": ["replay-server"],
    "producer": ["produce"],
    "features": ["features"],
    "score": ["score"],
    "sink": ["sink"],
    "api": ["api"],
    "tickwatch-init": ["stack", "init"],
}


def _kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _raw_documents() -> list[dict]:
    docs = []
    for name in _kustomization()["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return docs


@pytest.fixture(scope="module")
def documents() -> list[dict]:
    """The manifests as `kubectl kustomize` renders them, else the listed files as written."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run(
            [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]
    return _raw_documents()


def _of_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def _container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _settings_data(documents: list[dict]) -> dict[str, str]:
    return _of_kind(documents, "ConfigMap")["tickwatch-settings"]["data"]


def test_every_manifest_file_is_in_the_kustomization() -> None:
    listed = set(_kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_manifests_are_schema_valid(documents: list[dict]) -> None:
    assert len(documents) >= 12
    for doc in documents:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_misspelled_field(documents: list[dict]) -> None:
    broken = copy.deepcopy(_of_kind(documents, "Deployment")["api"])
    _container(broken)["livenesProbe"] = _container(broken).pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_service_has_a_deployment(documents: list[dict]) -> None:
    assert set(_of_kind(documents, "Deployment")) == WORKERS | {"api"}
    assert "tickwatch-init" in _of_kind(documents, "Job")


def test_every_workload_has_resources_and_runs_a_real_subcommand(
    documents: list[dict], tickwatch_subcommand
) -> None:
    workloads = {**_of_kind(documents, "Deployment"), **_of_kind(documents, "Job")}
    for name, workload in workloads.items():
        container = _container(workload)
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"].get(kind, {})), (name, kind)
        assert container["args"] == COMMANDS[name], name
        # Fails while a service's engineer has not yet added its subcommand to tickwatch/cli.py.
        tickwatch_subcommand(container["args"])
        assert workload["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_api_probes_health_and_readiness(documents: list[dict]) -> None:
    api = _container(_of_kind(documents, "Deployment")["api"])
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert ports["http"] == Settings(_env_file=None).api.port
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_workers_are_probed_on_their_metrics_port(documents: list[dict]) -> None:
    p = Settings(_env_file=None).prometheus
    expected = {
        "replay-server": p.replay_metrics_port,
        "producer": p.producer_metrics_port,
        "features": p.features_metrics_port,
        "score": p.score_metrics_port,
        "sink": p.sink_metrics_port,
    }
    deployments = _of_kind(documents, "Deployment")
    for name, port in expected.items():
        deployment = deployments[name]
        container = _container(deployment)
        ports = {q["name"]: q["containerPort"] for q in container["ports"]}
        assert ports["metrics"] == port, name
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == "metrics", (name, probe)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port), name


def test_settings_configmap_holds_only_real_settings_that_parse(
    documents: list[dict], known_env_names: frozenset[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _settings_data(documents)
    unknown = set(data) - known_env_names
    assert not unknown, f"not tickwatch settings: {sorted(unknown)}"
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.api.host == "0.0.0.0"
    assert settings.replay.host in _of_kind(documents, "Service")


def test_secret_references_resolve(documents: list[dict]) -> None:
    secrets = {
        name: set(s.get("stringData", {})) | set(s.get("data", {}))
        for name, s in _of_kind(documents, "Secret").items()
    }
    workloads = {**_of_kind(documents, "Deployment"), **_of_kind(documents, "Job")}
    referenced = set()
    for name, workload in workloads.items():
        for var in _container(workload).get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                referenced.add(var["name"])
                assert ref["key"] in secrets[ref["name"]] or ref.get("optional"), (name, ref)
    assert {"TICKWATCH_API__API_KEY", "TICKWATCH_POLYGON__API_KEY"} <= referenced


def test_consumers_scale_within_the_partition_count(documents: list[dict]) -> None:
    partitions = int(_settings_data(documents)["TICKWATCH_KAFKA__DEFAULT_PARTITIONS"])
    deployments = _of_kind(documents, "Deployment")
    autoscalers = _of_kind(documents, "HorizontalPodAutoscaler")
    for name in SCALED_BY_PARTITIONS:
        hpa = autoscalers[name]["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"] <= partitions, name
    for name, deployment in deployments.items():
        assert deployment["spec"]["replicas"] <= partitions, name
    producer = deployments["producer"]["spec"]
    assert producer["replicas"] == 1 and producer["strategy"]["type"] == "Recreate"


def test_services_select_pods_and_named_ports(documents: list[dict]) -> None:
    deployments = _of_kind(documents, "Deployment")
    for name, service in _of_kind(documents, "Service").items():
        pod = deployments[name]["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        port_names = {p["name"] for p in _container(deployments[name])["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (name, port)
