"""`make k8s-validate`: deploy/k8s/ checked offline, without a cluster.

Renders every overlay with `kubectl kustomize` (kubectl 1.20's kustomize v2.0.3 or a newer one), reads the
stand-alone manifests (secrets.example.yaml, jobs/, extras/), and checks every document
- against the Kubernetes OpenAPI schemas of the oldest and newest versions in SCHEMA_VERSIONS, strictly
  (an unknown field fails), with kubernetes-validate; a custom resource it has no schema for (KEDA's
  ScaledObject) is only parsed, and said so;
- against seal-lab's own rules (`rule_problems`): every container hardened as docker-compose.yml's, probes on
  every long-running one, the trainers behind a headless Service, the model services' gRPC ports open to the
  coordinator only, ingress denied by default, the store open to the seal-lab services only, and no Secret
  holding anything but a placeholder.

    python deploy/ci/k8s_validate.py            # exit 1 and one line per problem, or one summary line
tests/unit/test_k8s_manifests.py runs the same rules over the files without kubectl.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
#: Native gRPC probes are stable from 1.27; the newest schema kubernetes-validate ships.
SCHEMA_VERSIONS = ("1.27.0", "1.37.0")
#: Custom resources kubernetes-validate has no schema for: parsed, not validated.
CUSTOM_RESOURCES = {("keda.sh/v1alpha1", "ScaledObject")}
#: What an example Secret may hold: values the services refuse at start-up.
PLACEHOLDER = "REPLACE-ME"
MODEL_PORTS = {"generator": 50051, "trainer": 50052, "evaluator": 50053}
STORE_CLIENTS = {"coordinator", "generator", "trainer", "evaluator", "store-init"}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}


def read_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(overlay: Path, kubectl: str) -> list[dict]:
    """`kubectl kustomize OVERLAY` as documents; SystemExit with kustomize's own message when it fails."""
    done = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # Without kustomize v5's deprecation notes about the v2-compatible fields (`bases`, `commonLabels`).
        reason = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("# Warning:"))
        sys.exit(f"FAIL: kubectl kustomize {overlay.relative_to(ROOT)}:\n{reason.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _name(doc: dict) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def schema_problems(doc: dict, versions: Iterable[str] = SCHEMA_VERSIONS) -> list[str]:
    """The document against each version's schema, strictly; [] for a known custom resource."""
    import kubernetes_validate  # imported here: the rules alone (the unit tests) need only PyYAML

    if (doc.get("apiVersion"), doc.get("kind")) in CUSTOM_RESOURCES:
        return []
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{_name(doc)}: no Kubernetes {version} schema for {doc.get('apiVersion')}")
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            problems.append(f"{_name(doc)}: Kubernetes {version}: {where}: {error.message}")
    return problems


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") not in WORKLOADS:
        return None
    return doc["spec"]["template"]["spec"]


def component(labels: dict | None) -> str:
    return (labels or {}).get("app.kubernetes.io/component", "")


def container_problems(doc: dict) -> list[str]:
    """What a workload's containers lack next to docker-compose.yml's hardening (deploy/ci/check_compose.py):
    non-root, read-only root filesystem with an emptyDir on /tmp, no capabilities, no privilege gain, the
    runtime's seccomp profile, CPU and memory requests and limits; and probes on long-running ones."""
    spec = pod_spec(doc)
    if spec is None:
        return []
    pod_security = spec.get("securityContext") or {}
    empty_dirs = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
    problems = []
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(
            "automountServiceAccountToken is not false (no seal-lab pod calls the Kubernetes API)"
        )
    if (pod_security.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("the pod's seccompProfile is not RuntimeDefault")
    for container in [*(spec.get("initContainers") or []), *spec.get("containers", [])]:
        security = container.get("securityContext") or {}
        resources = container.get("resources") or {}
        lacks = []
        if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
            lacks.append("runAsNonRoot")
        if security.get("readOnlyRootFilesystem") is not True:
            lacks.append("readOnlyRootFilesystem: true")
        if security.get("allowPrivilegeEscalation") is not False:
            lacks.append("allowPrivilegeEscalation: false")
        if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
            lacks.append("capabilities.drop: [ALL]")
        if (security.get("capabilities") or {}).get("add") or security.get("privileged"):
            lacks.append("no capabilities added, not privileged")
        tmp = [m for m in container.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"]
        if not (tmp and tmp[0]["name"] in empty_dirs):
            lacks.append("an emptyDir on /tmp")
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(kind) or {})
            if missing:
                lacks.append(f"resources.{kind} {'/'.join(sorted(missing))}")
        if doc["kind"] != "Job":
            lacks += [probe for probe in ("readinessProbe", "livenessProbe") if probe not in container]
        if lacks:
            problems.append(f"container {container.get('name')} lacks " + ", ".join(lacks))
    return [f"{_name(doc)}: {problem}" for problem in problems]


def _ingress_from(policy: dict) -> list[tuple[set[str], set[int]]]:
    """(components allowed, ports) per ingress rule of a NetworkPolicy that selects pods by component."""
    rules = []
    for rule in policy["spec"].get("ingress") or []:
        allowed: set[str] = set()
        for peer in rule.get("from") or [{}]:
            selector = peer.get("podSelector")
            if selector is None or peer.get("namespaceSelector") is not None:
                allowed.add("<other namespaces>")
                continue
            allowed |= _selected(selector)
        rules.append((allowed, {int(p["port"]) for p in rule.get("ports") or []}))
    return rules


def _selected(selector: dict) -> set[str]:
    """The components a podSelector picks; `*` when it picks pods whatever their component."""
    if component(selector.get("matchLabels")):
        return {component(selector.get("matchLabels"))}
    for expression in selector.get("matchExpressions") or []:
        if expression["key"] == "app.kubernetes.io/component" and expression["operator"] == "In":
            return set(expression["values"])
    return {"*"}


def network_problems(docs: list[dict]) -> list[str]:
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    problems = []
    if not any(
        p["spec"].get("podSelector") == {}
        and "Ingress" in p["spec"].get("policyTypes", [])
        and not p["spec"].get("ingress")
        for p in policies
    ):
        problems.append("no default-deny ingress NetworkPolicy (podSelector {} with no ingress rule)")
    for name, port in MODEL_PORTS.items():
        opened = [
            (allowed, ports)
            for p in policies
            if name in _selected(p["spec"].get("podSelector") or {})
            or "*" in _selected(p["spec"]["podSelector"])
            for allowed, ports in _ingress_from(p)
            if not ports or port in ports
        ]
        if not any("coordinator" in allowed for allowed, _ in opened):
            problems.append(f"NetworkPolicy: the {name}'s port {port} is not opened to the coordinator")
        strangers = set().union(*(allowed for allowed, _ in opened)) - {"coordinator"} if opened else set()
        if strangers:
            problems.append(f"NetworkPolicy: the {name}'s port {port} is open to {sorted(strangers)}")
    if any(component(d["metadata"].get("labels")) == "store" for d in docs if d.get("kind") == "StatefulSet"):
        opened = [
            allowed
            for p in policies
            if "store" in _selected(p["spec"].get("podSelector") or {})
            for allowed, ports in _ingress_from(p)
            if not ports or 9000 in ports
        ]
        strangers = set().union(*opened) - STORE_CLIENTS if opened else set()
        if not opened or strangers:
            problems.append(
                f"NetworkPolicy: the store's port 9000 is open to {sorted(strangers) or 'nobody'}"
            )
    return problems


def secret_problems(doc: dict) -> list[str]:
    if doc.get("kind") != "Secret":
        return []
    if doc.get("data"):
        return [f"{_name(doc)}: holds base64 `data`; an example Secret has `stringData: {PLACEHOLDER}` only"]
    real = [key for key, value in (doc.get("stringData") or {}).items() if value != PLACEHOLDER]
    return [f"{_name(doc)}: {key} is not the placeholder {PLACEHOLDER}" for key in real]


def service_problems(docs: list[dict]) -> list[str]:
    trainers = [
        d for d in docs if d.get("kind") == "Service" and component(d["spec"].get("selector")) == "trainer"
    ]
    if not trainers:
        return []
    if any(d["spec"].get("clusterIP") != "None" for d in trainers):
        return [
            "Service: the trainers' Service is not headless (clusterIP: None): DNS must name every trainer"
        ]
    return []


def api_client_problems(stack: list[dict], doc: dict) -> list[str]:
    """A Job labelled `seal-lab/api-client` must match the rendered coordinator policy's `from` selector
    (kustomize adds the overlay's commonLabels to it); else its calls are dropped."""
    if doc.get("kind") != "Job":
        return []
    labels = doc["spec"]["template"]["metadata"].get("labels") or {}
    if "seal-lab/api-client" not in labels:
        return []
    policies = [
        d
        for d in stack
        if d.get("kind") == "NetworkPolicy" and "coordinator" in _selected(d["spec"]["podSelector"])
    ]
    peers = [  # pods of this namespace only: a namespaceSelector or an empty `from` is not what this Job needs
        peer["podSelector"]
        for p in policies
        for rule in p["spec"].get("ingress") or []
        for peer in rule.get("from") or []
        if "podSelector" in peer and "namespaceSelector" not in peer
    ]
    if any(
        not peer.get("matchExpressions") and (peer.get("matchLabels") or {}).items() <= labels.items()
        for peer in peers
    ):
        return []
    return [f"{_name(doc)}: its pod's labels match no NetworkPolicy that lets clients reach the coordinator"]


def rule_problems(docs: list[dict]) -> list[str]:
    problems = network_problems(docs) + service_problems(docs)
    for doc in docs:
        problems += container_problems(doc) + secret_problems(doc)
    return problems


def main() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        sys.exit("FAIL: kubectl not found: install it (Debian: apt-get install kubernetes-client)")
    problems: list[str] = []
    summary = []
    rendered: list[dict] = []
    for overlay in sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml")):
        docs = render(overlay, kubectl)
        rendered = rendered or docs
        label = f"overlays/{overlay.name}"
        problems += [f"{label}: {p}" for p in rule_problems(docs)]
        problems += [f"{label}: {p}" for doc in docs for p in schema_problems(doc)]
        summary.append(f"{label} ({len(docs)} documents)")
    for path in [
        K8S / "secrets.example.yaml",
        *sorted((K8S / "jobs").glob("*.yaml")),
        *sorted((K8S / "extras").glob("*.yaml")),
    ]:
        docs = read_documents(path)
        label = str(path.relative_to(K8S))
        problems += [f"{label}: {p}" for doc in docs for p in container_problems(doc) + secret_problems(doc)]
        problems += [f"{label}: {p}" for doc in docs for p in api_client_problems(rendered, doc)]
        problems += [f"{label}: {p}" for doc in docs for p in schema_problems(doc)]
        parsed = [_name(d) for d in docs if (d.get("apiVersion"), d.get("kind")) in CUSTOM_RESOURCES]
        summary.append(
            f"{label} ({len(docs)} documents" + (f"; parsed only: {', '.join(parsed)})" if parsed else ")")
        )
    if problems:
        sys.exit("FAIL:\n  " + "\n  ".join(problems))
    print(
        f"ok: Kubernetes {' and '.join(SCHEMA_VERSIONS)} schemas and seal-lab's rules: " + ", ".join(summary)
    )


if __name__ == "__main__":
    main()
