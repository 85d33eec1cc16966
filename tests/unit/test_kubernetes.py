"""deploy/kubernetes: every manifest is valid against the Kubernetes API schemas (strict: an unknown
field fails), and what the kustomizations render holds what docs/scaling.md promises: sized
resources, probes on the right paths, locked-down pods, an autoscaler per service, Services that
select pods, a gateway that names its upstreams by fully qualified names, the overlay in its
namespace.

The checks run on the base's own files (no tool needed) and on what ``kubectl kustomize`` renders
from the base and from the example overlay. Without kubectl the rendering tests skip; with
``CI=true`` they fail instead (CI installs kubectl).
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Neither ships type information (and their stubs are no dependency): typed as Any.
yaml: Any = importlib.import_module("yaml")
kubernetes_validate: Any = importlib.import_module("kubernetes_validate")

#: The newest Kubernetes version whose API schemas kubernetes-validate (>= 1.37) ships.
KUBERNETES_VERSION = "1.37"
#: The oldest version the manifests are for: the preStop `sleep` action is on by default from 1.30.
MIN_KUBERNETES_VERSION = "1.30"
VERSIONS = [MIN_KUBERNETES_VERSION, KUBERNETES_VERSION]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
BASE = DEPLOY / "base"
OVERLAY = DEPLOY / "overlays" / "example"
KUSTOMIZATIONS = {"base": BASE, "example": OVERLAY}
#: The namespace the example overlay renders into.
OVERLAY_NAMESPACE = "latentwire"
#: Where the example overlay's images come from: a placeholder, never a real registry.
OVERLAY_REGISTRY = "registry.example.internal/latentwire/"

SERVICES = ("sender", "receiver", "gateway")
AUTOSCALED = ("sender", "receiver")
PORTS = {"sender": 8001, "receiver": 8002, "gateway": 8080}
#: The images' service user (docker/Dockerfile).
UID = 10001
#: Seconds the services give requests in flight after SIGTERM (LATENTWIRE_GRACEFUL_TIMEOUT_S' default).
GRACEFUL_TIMEOUT_S = 10.0
#: Probe -> path, per container.
PROBES = {
    "sender": {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"},
    "receiver": {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"},
    "gateway": {"readinessProbe": "/healthz", "livenessProbe": "/healthz"},
}
#: Seconds a model load may take before the startup probe gives up (compose's start_period: 60 s).
STARTUP_WINDOW_S = 60
#: Measured RSS in bytes (docker compose; the comments in deploy/kubernetes/base say where each is
#: from): idle, settled after a load, and the peak under the heaviest load measured. Only the
#: sender was measured under load: the receiver's and the gateway's figures are their idle RSS.
MEASURED_RSS = {
    "sender": {"idle": 279e6, "settled": 356e6, "peak": 462e6},
    "receiver": {"idle": 280e6, "settled": 280e6, "peak": 280e6},
    "gateway": {"idle": 10e6, "settled": 10e6, "peak": 10e6},
}
#: Kinds that live in a namespace (everything else the manifests hold is cluster-wide).
CLUSTER_SCOPED = {"Namespace"}

Doc = dict[str, Any]


# ------------------------------------------------------------------------------------------ helpers
def load_yaml(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifest_files() -> list[Path]:
    """Every YAML file under deploy/kubernetes but the kustomizations themselves."""
    return sorted(
        p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"} and p.name != "kustomization.yaml"
    )


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind}s named {name!r}"
    return found[0]


def namespace_of(doc: Doc) -> str | None:
    ns: str | None = doc["metadata"].get("namespace")
    return ns


def containers(deployment: Doc) -> list[Doc]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


_UNITS = {
    "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("500m", "384Mi", "2") as a number (cores or bytes)."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match and match.group(2) in {"", *_UNITS}, f"not a quantity: {value!r}"
    return float(match.group(1)) * _UNITS.get(match.group(2), 1.0)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pods_selected(docs: list[Doc], selector: dict[str, str], namespace: str | None) -> list[Doc]:
    """The Deployments (same namespace) whose pods ``selector`` picks."""
    return [
        d
        for d in of_kind(docs, "Deployment")
        if namespace_of(d) == namespace and selects(selector, d["spec"]["template"]["metadata"]["labels"])
    ]


def memory_tmpfs_bytes(deployment: Doc) -> float:
    """What the pod's memory-backed emptyDirs may hold: charged to its memory, like its RSS."""
    total = 0.0
    for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
        empty_dir = volume.get("emptyDir")
        if empty_dir is not None and empty_dir.get("medium") == "Memory":
            total += quantity(empty_dir["sizeLimit"])
    return total


# ------------------------------------------------------------------------------------------ checks
# Each returns the problems it finds (empty: fine), so that the tests below can show it finds them.
def resource_problems(docs: list[Doc]) -> list[str]:
    problems = []
    names = sorted(d["metadata"]["name"] for d in of_kind(docs, "Deployment"))
    if names != sorted(SERVICES):
        problems.append(f"Deployments {names}, expected {sorted(SERVICES)}")
    for deployment in of_kind(docs, "Deployment"):
        for c in containers(deployment):
            res = c.get("resources", {})
            missing = [
                f"{field}.{resource}"
                for field in ("requests", "limits")
                for resource in ("cpu", "memory")
                if resource not in res.get(field, {})
            ]
            if missing:
                problems.append(f"{c['name']}: no {', '.join(missing)}")
                continue
            req, lim = res["requests"], res["limits"]
            for resource in ("cpu", "memory"):
                if quantity(req[resource]) > quantity(lim[resource]):
                    problems.append(f"{c['name']}: {resource} request above its limit")
            rss = MEASURED_RSS.get(c["name"])
            if rss is None:
                problems.append(f"{c['name']}: no measured RSS to size it from")
                continue
            if quantity(req["memory"]) < rss["settled"]:
                problems.append(f"{c['name']}: memory request below the measured RSS {rss['settled']:.0f}")
            needed = rss["peak"] + memory_tmpfs_bytes(deployment)
            if quantity(lim["memory"]) < needed:
                problems.append(f"{c['name']}: memory limit below the peak RSS + /tmp tmpfs ({needed:.0f})")
            if c["name"] in AUTOSCALED:
                threads = env_of(c).get("LATENTWIRE_TORCH_THREADS", {}).get("value")
                if threads != "1":
                    problems.append(f"{c['name']}: LATENTWIRE_TORCH_THREADS is {threads!r}, sized for '1'")
                elif quantity(lim["cpu"]) < int(threads) + 1:
                    problems.append(f"{c['name']}: cpu limit below the torch thread + the event loop")
    return problems


def probe_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for deployment in of_kind(docs, "Deployment"):
        for c in containers(deployment):
            expected = PROBES.get(c["name"], {})
            if not expected:
                problems.append(f"{c['name']}: no probes expected for it")
            port_names = {p.get("name") for p in c.get("ports", [])}
            port_numbers = {p["containerPort"] for p in c.get("ports", [])}
            for probe, path in expected.items():
                get = c.get(probe, {}).get("httpGet")
                if get is None:
                    problems.append(f"{c['name']}: no {probe} (httpGet)")
                    continue
                if get.get("path") != path:
                    problems.append(f"{c['name']}: {probe} on {get.get('path')!r}, not {path}")
                if get["port"] not in port_names | port_numbers:
                    problems.append(f"{c['name']}: {probe} on port {get['port']!r}, not one of its ports")
            if PORTS.get(c["name"]) not in port_numbers:
                problems.append(f"{c['name']}: does not expose port {PORTS.get(c['name'])}")
            startup = c.get("startupProbe")
            if startup is not None:
                window = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
                if window < STARTUP_WINDOW_S:
                    problems.append(f"{c['name']}: startup probe gives the model {window} s, not 60")
    return problems


def security_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for deployment in of_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if (psc.get("runAsNonRoot"), psc.get("runAsUser"), psc.get("runAsGroup")) != (True, UID, UID):
            problems.append(f"{name}: pod not runAsNonRoot as {UID}:{UID}")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pod seccompProfile not RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: mounts a service account token")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            problems.append(f"{name}: shares a host namespace")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        if any("hostPath" in v for v in volumes.values()):
            problems.append(f"{name}: mounts a hostPath")
        for c in containers(deployment):
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{c['name']}: root file system not read-only")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{c['name']}: allowPrivilegeEscalation not false")
            if sc.get("privileged"):
                problems.append(f"{c['name']}: privileged")
            capabilities = sc.get("capabilities", {})
            if "ALL" not in capabilities.get("drop", []) or capabilities.get("add"):
                problems.append(f"{c['name']}: capabilities not dropped (ALL) or some added")
            if sc.get("runAsUser", UID) == 0 or sc.get("runAsNonRoot", True) is not True:
                problems.append(f"{c['name']}: may run as root")
            if sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") != "RuntimeDefault":
                problems.append(f"{c['name']}: seccompProfile not RuntimeDefault")
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            empty_dir = volumes.get(tmp[0]["name"], {}).get("emptyDir") if tmp else None
            if not empty_dir or empty_dir.get("medium") != "Memory" or "sizeLimit" not in empty_dir:
                problems.append(f"{c['name']}: /tmp is not a size-limited, memory-backed emptyDir")
    return problems


def shutdown_problems(docs: list[Doc]) -> list[str]:
    """SIGTERM reaches the service (not PID 1, as under compose's tini), and the pod gets the time
    to drain: its preStop hook (no command: the images guarantee no shell) plus the graceful timeout."""
    problems = []
    for deployment in of_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        if pod.get("shareProcessNamespace") is not True:
            problems.append(f"{name}: the service is PID 1 (no shareProcessNamespace), deaf to SIGTERM")
        for c in containers(deployment):
            pre_stop = c.get("lifecycle", {}).get("preStop", {})
            if "exec" in pre_stop:
                problems.append(f"{c['name']}: preStop runs a command (the images guarantee no shell)")
            graceful = env_of(c).get("LATENTWIRE_GRACEFUL_TIMEOUT_S", {}).get("value", GRACEFUL_TIMEOUT_S)
            needed = float(graceful) + pre_stop.get("sleep", {}).get("seconds", 0)
            if pod.get("terminationGracePeriodSeconds", 30) <= needed:
                problems.append(f"{name}: terminationGracePeriodSeconds not above {needed} s")
    return problems


def autoscaler_problems(docs: list[Doc]) -> list[str]:
    problems = []
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    for hpa in hpas:
        ref, spec = hpa["spec"]["scaleTargetRef"], hpa["spec"]
        targets = [
            d
            for d in of_kind(docs, "Deployment")
            if d["metadata"]["name"] == ref["name"] and namespace_of(d) == namespace_of(hpa)
        ]
        kind = (hpa["apiVersion"], ref.get("apiVersion"), ref["kind"])
        if kind != ("autoscaling/v2", "apps/v1", "Deployment") or len(targets) != 1:
            problems.append(f"HPA {hpa['metadata']['name']}: targets no Deployment of its namespace")
            continue
        target = targets[0]
        if "replicas" in target["spec"]:
            problems.append(f"{ref['name']}: sets replicas, which every apply would reset under its HPA")
        cpu = [
            m["resource"]["target"]
            for m in spec.get("metrics", [])
            if m["type"] == "Resource" and m["resource"]["name"] == "cpu"
        ]
        utilization = (
            cpu[0].get("averageUtilization", 0) if cpu and cpu[0].get("type") == "Utilization" else 0
        )
        if not 0 < utilization <= 100:
            problems.append(f"HPA {ref['name']}: not on CPU utilization (0-100%)")
        if not 1 <= spec.get("minReplicas", 1) <= spec["maxReplicas"]:
            problems.append(f"HPA {ref['name']}: minReplicas..maxReplicas is empty")
        for pdb in of_kind(docs, "PodDisruptionBudget"):
            selector = pdb["spec"]["selector"]["matchLabels"]
            if target in pods_selected(docs, selector, namespace_of(pdb)) and pdb["spec"].get(
                "minAvailable", 0
            ) >= spec.get("minReplicas", 1):
                problems.append(f"PDB {pdb['metadata']['name']}: minAvailable blocks every eviction")
    scaled = sorted(h["spec"]["scaleTargetRef"]["name"] for h in hpas)
    if not set(AUTOSCALED) <= set(scaled) or len(scaled) != len(set(scaled)):
        problems.append(f"HPAs target {scaled}, expected one each for {list(AUTOSCALED)}")
    return problems


def service_problems(docs: list[Doc]) -> list[str]:
    problems = []
    served = set()
    for kind in ("Service", "PodDisruptionBudget"):
        for obj in of_kind(docs, kind):
            name = f"{kind} {obj['metadata']['name']}"
            selector = obj["spec"]["selector"]
            selector = selector["matchLabels"] if kind == "PodDisruptionBudget" else selector
            picked = pods_selected(docs, selector, namespace_of(obj))
            if len(picked) != 1:
                problems.append(f"{name}: selects the pods of {len(picked)} Deployments, not 1")
                continue
            if kind == "PodDisruptionBudget":
                continue
            served.add(picked[0]["metadata"]["name"])
            ports = [p for c in containers(picked[0]) for p in c.get("ports", [])]
            for port in obj["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if not any(target in (p.get("name"), p["containerPort"]) for p in ports):
                    problems.append(f"{name}: targetPort {target!r} is no port of its pods")
            headless = obj["spec"].get("clusterIP") == "None"
            if headless != (obj["metadata"]["name"] in AUTOSCALED):
                problems.append(f"{name}: headless is {headless}")
            if headless and obj["spec"].get("publishNotReadyAddresses"):
                problems.append(f"{name}: publishes pods that are not ready")
    if served != set(SERVICES):
        problems.append(f"Services reach {sorted(served)}, expected {sorted(SERVICES)}")
    return problems


def gateway_problems(docs: list[Doc]) -> list[str]:
    """The gateway's upstreams: ``<service>.$(POD_NAMESPACE).svc.cluster.local.:<port>`` (fully
    qualified, the trailing dot included: no search-domain lookups), naming a headless Service of
    its own namespace and that Service's port."""
    problems = []
    gateway = named(docs, "Deployment", "gateway")
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    env = container.get("env", [])
    order = [e["name"] for e in env]
    pod_ns = env_of(container).get("POD_NAMESPACE", {})
    if pod_ns.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.namespace":
        problems.append("gateway: POD_NAMESPACE does not come from metadata.namespace")
    namespace = namespace_of(gateway) or "<namespace>"
    for service in ("sender", "receiver"):
        variable = f"LATENTWIRE_GATEWAY_{service.upper()}"
        value = env_of(container).get(variable, {}).get("value", "")
        # Kubernetes expands $(VAR) only for variables defined earlier in the list.
        if "$(POD_NAMESPACE)" in value and order.index("POD_NAMESPACE") > order.index(variable):
            problems.append(f"gateway: {variable} uses POD_NAMESPACE before it is defined")
        host, _, port = value.replace("$(POD_NAMESPACE)", namespace).rpartition(":")
        svc = named(docs, "Service", service)
        expected = f"{service}.{namespace_of(svc) or '<namespace>'}.svc.cluster.local."
        if host != expected or not port.isdigit():
            problems.append(f"gateway: {variable}={value!r} is not {expected}:<port>")
        elif int(port) not in [p["port"] for p in svc["spec"]["ports"]]:
            problems.append(f"gateway: {variable} port {port} is not a port of Service {service}")
    return problems


def label_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/part-of") != "latentwire":
            problems.append(f"{doc['kind']} {doc['metadata']['name']}: no part-of=latentwire label")
    for deployment in of_kind(docs, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/component") != deployment["metadata"]["name"]:
            problems.append(f"{deployment['metadata']['name']}: pods not labelled with their component")
    return problems


def overlay_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for doc in docs:
        expected = None if doc["kind"] in CLUSTER_SCOPED else OVERLAY_NAMESPACE
        if namespace_of(doc) != expected:
            problems.append(f"{doc['kind']} {doc['metadata']['name']}: namespace {namespace_of(doc)!r}")
    namespaces = [d["metadata"]["name"] for d in of_kind(docs, "Namespace")]
    if namespaces != [OVERLAY_NAMESPACE]:
        problems.append(f"Namespaces {namespaces}, expected [{OVERLAY_NAMESPACE!r}]")
    secrets = {s["metadata"]["name"]: s for s in of_kind(docs, "Secret")}
    for deployment in of_kind(docs, "Deployment"):
        for c in containers(deployment):
            if not c["image"].startswith(OVERLAY_REGISTRY + c["name"] + ":"):
                problems.append(f"{c['name']}: image {c['image']}, not from {OVERLAY_REGISTRY}")
            if c["name"] not in AUTOSCALED:
                continue
            ref = env_of(c).get("LATENTWIRE_API_KEYS", {}).get("valueFrom", {}).get("secretKeyRef", {})
            secret = secrets.get(ref.get("name", ""), {})
            if ref.get("key") not in {*secret.get("data", {}), *secret.get("stringData", {})}:
                problems.append(f"{c['name']}: LATENTWIRE_API_KEYS is not a key of a Secret of the overlay")
    for ingress in of_kind(docs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                port = backend["port"].get("name", backend["port"].get("number"))
                ports = named(docs, "Service", backend["name"])["spec"]["ports"]
                if not any(port in (p.get("name"), p["port"]) for p in ports):
                    problems.append(f"Ingress: port {port!r} is no port of Service {backend['name']}")
    return problems


CHECKS: dict[str, Callable[[list[Doc]], list[str]]] = {
    "resources": resource_problems,
    "probes": probe_problems,
    "security": security_problems,
    "shutdown": shutdown_problems,
    "autoscalers": autoscaler_problems,
    "services": service_problems,
    "gateway": gateway_problems,
}


# ----------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class Source:
    name: str
    docs: list[Doc]


def base_files() -> list[Doc]:
    """The base's manifests as written (before kustomize adds the common labels)."""
    return [doc for path in manifest_files() if path.parent == BASE for doc in load_yaml(path)]


@pytest.fixture(scope="module")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must install kubectl: `kubectl kustomize` renders deploy/kubernetes")
        pytest.skip("kubectl not found: the kustomizations are not rendered (with CI=true this fails)")
    return path


def kustomize(kubectl: str, directory: Path) -> list[Doc]:
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


_RENDERED: dict[str, list[Doc]] = {}


def render(kubectl: str, name: str) -> list[Doc]:
    """What ``kubectl kustomize`` makes of a kustomization (run once per session, copied out)."""
    if name not in _RENDERED:
        _RENDERED[name] = kustomize(kubectl, KUSTOMIZATIONS[name])
    return copy.deepcopy(_RENDERED[name])


@pytest.fixture(params=sorted(KUSTOMIZATIONS))
def rendered(request: pytest.FixtureRequest, kubectl: str) -> Source:
    """The base and the example overlay, rendered."""
    return Source(request.param, render(kubectl, request.param))


@pytest.fixture(params=["files", *sorted(KUSTOMIZATIONS)])
def source(request: pytest.FixtureRequest) -> Source:
    """The base's own files (always), then each rendered kustomization (needs kubectl)."""
    if request.param == "files":
        return Source("files", base_files())
    return Source(request.param, render(request.getfixturevalue("kubectl"), request.param))


def validate(doc: Doc, version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): {where}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(exc.message)


# ------------------------------------------------------------------------------------------- tests
def test_the_schemas_of_both_versions_are_installed() -> None:
    shipped = {".".join(v.split(".")[:2]) for v in kubernetes_validate.utils.all_versions()}
    missing = [v for v in VERSIONS if v not in shipped]
    assert not missing, f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for {missing}"


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_file_is_valid(path: Path, version: str) -> None:
    docs = load_yaml(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        validate(doc, version)


def test_strict_validation_rejects_an_unknown_field_and_a_wrong_type() -> None:
    deployment = named(base_files(), "Deployment", "sender")
    validate(deployment, KUBERNETES_VERSION)
    typo = copy.deepcopy(deployment)
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["livenessprobe"] = container.pop("livenessProbe")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "30s"
    for bad in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_each_kustomization_lists_every_manifest_of_its_directory(name: str) -> None:
    directory = KUSTOMIZATIONS[name]
    kustomization = load_yaml(directory / "kustomization.yaml")[0]
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    for resource in resources:
        assert (directory / resource).exists(), f"{name}: resource {resource} does not exist"
    own = sorted(p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")
    assert own, f"{name}: no manifests"
    assert sorted(r for r in resources if "/" not in r) == own, f"{name}: a manifest is not in its resources"
    assert name == "base" or "../../base" in resources, f"{name}: not an overlay of the base"
    # kustomize renames the Services but not the names inside the gateway's env values.
    assert not {"namePrefix", "nameSuffix"} & set(kustomization), f"{name}: renames the Services"


@pytest.mark.parametrize("version", VERSIONS)
def test_every_rendered_object_is_valid(rendered: Source, version: str) -> None:
    # 3 Deployments, 3 Services, 3 PodDisruptionBudgets, 2 HorizontalPodAutoscalers at least
    assert len(rendered.docs) >= 11, f"{rendered.name} renders only {len(rendered.docs)} objects"
    for doc in rendered.docs:
        validate(doc, version)


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_deployment_holds_what_the_docs_promise(source: Source, check: str) -> None:
    problems = CHECKS[check](source.docs)
    assert not problems, f"{source.name}: " + "; ".join(problems)


def test_rendered_objects_carry_the_common_labels(rendered: Source) -> None:
    problems = label_problems(rendered.docs)
    assert not problems, "; ".join(problems)


def test_the_base_renders_without_namespace_and_with_local_images(kubectl: str) -> None:
    docs = render(kubectl, "base")
    assert all(namespace_of(d) is None for d in docs)
    images = sorted(c["image"] for d in of_kind(docs, "Deployment") for c in containers(d))
    assert images == [f"latentwire-{name}:local" for name in sorted(SERVICES)]


def test_the_example_overlay_renders_into_its_namespace(kubectl: str) -> None:
    docs = render(kubectl, "example")
    problems = overlay_problems(docs)
    assert not problems, "; ".join(problems)
    namespace = named(docs, "Namespace", OVERLAY_NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # The gateway's upstreams, expanded in that namespace, are the Services' own names.
    (gateway,) = named(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    for service, port in (("sender", 8001), ("receiver", 8002)):
        upstream = env_of(gateway)[f"LATENTWIRE_GATEWAY_{service.upper()}"]["value"]
        expanded = upstream.replace("$(POD_NAMESPACE)", OVERLAY_NAMESPACE)
        assert expanded == f"{service}.{OVERLAY_NAMESPACE}.svc.cluster.local.:{port}"


# --------------------------------------------------------------------- the checks can find problems
def _container(docs: list[Doc], name: str) -> Doc:
    (container,) = named(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return container


def _pod(docs: list[Doc], name: str) -> Doc:
    pod: Doc = named(docs, "Deployment", name)["spec"]["template"]["spec"]
    return pod


MUTATIONS: dict[str, tuple[Callable[[list[Doc]], Any], Callable[[list[Doc]], list[str]]]] = {
    "no cpu limit": (lambda d: _container(d, "sender")["resources"]["limits"].pop("cpu"), resource_problems),
    "memory limit under the peak": (
        lambda d: _container(d, "sender")["resources"]["limits"].update(memory="512Mi"),
        resource_problems,
    ),
    "memory request under the RSS": (
        lambda d: _container(d, "receiver")["resources"]["requests"].update(memory="128Mi"),
        resource_problems,
    ),
    "two torch threads": (
        lambda d: env_of(_container(d, "sender"))["LATENTWIRE_TORCH_THREADS"].update(value="2"),
        resource_problems,
    ),
    "readiness on /healthz": (
        lambda d: _container(d, "receiver")["readinessProbe"]["httpGet"].update(path="/healthz"),
        probe_problems,
    ),
    "no liveness probe": (lambda d: _container(d, "gateway").pop("livenessProbe"), probe_problems),
    "probe on an unknown port": (
        lambda d: _container(d, "sender")["startupProbe"]["httpGet"].update(port="metrics"),
        probe_problems,
    ),
    "short startup window": (
        lambda d: _container(d, "sender")["startupProbe"].update(failureThreshold=5),
        probe_problems,
    ),
    "writable root": (
        lambda d: _container(d, "gateway")["securityContext"].update(readOnlyRootFilesystem=False),
        security_problems,
    ),
    "a capability kept": (
        lambda d: _container(d, "sender")["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
        security_problems,
    ),
    "root user": (lambda d: _pod(d, "receiver")["securityContext"].update(runAsUser=0), security_problems),
    "token mounted": (lambda d: _pod(d, "sender").pop("automountServiceAccountToken"), security_problems),
    "disk-backed /tmp": (
        lambda d: _pod(d, "sender")["volumes"][0]["emptyDir"].pop("medium"),
        security_problems,
    ),
    "grace period too short": (
        lambda d: _pod(d, "sender").update(terminationGracePeriodSeconds=10),
        shutdown_problems,
    ),
    "grace period under the raised graceful timeout": (
        lambda d: env_of(_container(d, "receiver"))["LATENTWIRE_GRACEFUL_TIMEOUT_S"].update(value="30"),
        shutdown_problems,
    ),
    "preStop exec": (
        lambda d: _container(d, "sender")["lifecycle"].update(preStop={"exec": {"command": ["sleep", "5"]}}),
        shutdown_problems,
    ),
    "the service as PID 1": (lambda d: _pod(d, "gateway").pop("shareProcessNamespace"), shutdown_problems),
    "HPA on a missing Deployment": (
        lambda d: named(d, "HorizontalPodAutoscaler", "sender")["spec"]["scaleTargetRef"].update(
            name="senders"
        ),
        autoscaler_problems,
    ),
    "replicas beside an HPA": (
        lambda d: named(d, "Deployment", "receiver")["spec"].update(replicas=3),
        autoscaler_problems,
    ),
    "PDB blocking drains": (
        lambda d: named(d, "HorizontalPodAutoscaler", "sender")["spec"].update(minReplicas=1),
        autoscaler_problems,
    ),
    "Service selecting nothing": (
        lambda d: named(d, "Service", "receiver")["spec"]["selector"].update(
            {"app.kubernetes.io/component": "decoder"}
        ),
        service_problems,
    ),
    "sender Service with a virtual IP": (
        lambda d: named(d, "Service", "sender")["spec"].pop("clusterIP"),
        service_problems,
    ),
    "Service to a missing port": (
        lambda d: named(d, "Service", "gateway")["spec"]["ports"][0].update(targetPort=9090),
        service_problems,
    ),
    "short upstream name": (
        lambda d: env_of(_container(d, "gateway"))["LATENTWIRE_GATEWAY_SENDER"].update(value="sender:8001"),
        gateway_problems,
    ),
    "upstream on the wrong port": (
        lambda d: env_of(_container(d, "gateway"))["LATENTWIRE_GATEWAY_RECEIVER"].update(
            value="receiver.$(POD_NAMESPACE).svc.cluster.local.:8001"
        ),
        gateway_problems,
    ),
    "POD_NAMESPACE defined after its use": (
        lambda d: _container(d, "gateway")["env"].append(_container(d, "gateway")["env"].pop(0)),
        gateway_problems,
    ),
    "an object in another namespace": (
        lambda d: named(d, "Service", "sender")["metadata"].update(namespace="default"),
        overlay_problems,
    ),
    "an image from elsewhere": (
        lambda d: _container(d, "receiver").update(image="latentwire-receiver:local"),
        overlay_problems,
    ),
    "API keys from a missing Secret": (
        lambda d: [s["metadata"].update(name="other") for s in of_kind(d, "Secret")],
        overlay_problems,
    ),
}


def overlay_like(docs: list[Doc]) -> list[Doc]:
    """The base's files as the example overlay would render them (without kubectl): namespaced,
    images from the registry, API keys from a Secret."""
    docs = copy.deepcopy(docs)
    for doc in docs:
        doc["metadata"]["namespace"] = OVERLAY_NAMESPACE
    for name in SERVICES:
        container = _container(docs, name)
        container["image"] = f"{OVERLAY_REGISTRY}{name}:0.1.0"
        if name in AUTOSCALED:
            ref = {"secretKeyRef": {"name": "keys", "key": "api-keys"}}
            container["env"].append({"name": "LATENTWIRE_API_KEYS", "valueFrom": ref})
    secret = {"apiVersion": "v1", "kind": "Secret", "data": {"api-keys": "eA=="}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OVERLAY_NAMESPACE}}
    return [*docs, {**secret, "metadata": {"name": "keys", "namespace": OVERLAY_NAMESPACE}}, namespace]


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_check_finds_what_it_checks(mutation: str) -> None:
    mutate, check = MUTATIONS[mutation]
    docs = overlay_like(base_files()) if check is overlay_problems else base_files()
    assert check(docs) == [], "the unmutated files must pass"
    mutate(docs)
    assert check(docs), f"{check.__name__} misses: {mutation}"
