"""deploy/k8s/: the manifests follow the project's rules, read straight from the files (no kubectl here; CI's
`make k8s-validate` renders every overlay and runs the same rules plus the Kubernetes schemas).

The rules live in deploy/ci/k8s_validate.py; these tests run them over base/ and store/ (what overlays/cpu
renders, less kustomize's namespace and labels), and show that each rule catches what it is for.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def _load_validator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_validate", ROOT / "deploy" / "ci" / "k8s_validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["k8s_validate"] = module
    spec.loader.exec_module(module)
    return module


v = _load_validator()


def _kustomization_files(folder: Path) -> list[Path]:
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    return [folder / name for name in listed]


def stack() -> list[dict]:
    """base/ and store/, every file their kustomizations list."""
    files = _kustomization_files(K8S / "base") + _kustomization_files(K8S / "store")
    return [doc for path in files for doc in v.read_documents(path)]


def find(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def container(docs: list[dict], name: str) -> dict:
    return find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def test_the_stack_as_committed_breaks_no_rule():
    assert v.rule_problems(stack()) == []


def test_the_bench_job_and_the_example_secrets_break_no_rule():
    for path in [K8S / "jobs" / "bench-conditions.yaml", K8S / "secrets.example.yaml"]:
        docs = v.read_documents(path)
        assert [p for doc in docs for p in v.container_problems(doc) + v.secret_problems(doc)] == []


def test_every_workload_of_the_stack_is_checked_coordinator_services_store_and_its_init_job():
    checked = {d["metadata"]["name"] for d in stack() if v.pod_spec(d) is not None}
    assert checked == {
        "seal-coordinator",
        "seal-generator",
        "seal-trainer",
        "seal-evaluator",
        "seal-store",
        "seal-store-init",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem: true"),
        (
            lambda c: c["securityContext"].update(allowPrivilegeEscalation=True),
            "allowPrivilegeEscalation: false",
        ),
        (lambda c: c["securityContext"]["capabilities"].update(drop=["NET_RAW"]), "capabilities.drop: [ALL]"),
        (lambda c: c["securityContext"]["capabilities"].update(add=["NET_ADMIN"]), "no capabilities added"),
        (lambda c: c["resources"].pop("limits"), "resources.limits cpu/memory"),
        (lambda c: c.pop("readinessProbe"), "readinessProbe"),
        (lambda c: c.pop("livenessProbe"), "livenessProbe"),
        (lambda c: c.update(volumeMounts=c["volumeMounts"][1:]), "an emptyDir on /tmp"),
    ],
)
def test_a_trainer_container_without_one_hardening_setting_is_named(change, message):
    docs = copy.deepcopy(stack())
    change(container(docs, "seal-trainer"))
    problems = v.rule_problems(docs)
    assert len(problems) == 1 and problems[0].startswith("Deployment/seal-trainer: container trainer lacks ")
    assert message in problems[0]


def test_the_model_services_have_native_grpc_probes_on_their_port_and_a_generous_startup_probe():
    docs = stack()
    for name, port in v.MODEL_PORTS.items():
        service = container(docs, f"seal-{name}")
        assert [service[p]["grpc"]["port"] for p in ("startupProbe", "readinessProbe", "livenessProbe")] == [
            port
        ] * 3
        startup = service["startupProbe"]
        assert (
            startup["periodSeconds"] * startup["failureThreshold"] >= 600
        )  # a model's load, ten minutes at least
    coordinator = container(docs, "seal-coordinator")
    assert coordinator["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # The API refuses a Host it does not know (SEAL_COORDINATOR_ALLOWED_HOSTS): the probe names one it does.
    assert {"name": "Host", "value": "localhost"} in coordinator["readinessProbe"]["httpGet"]["httpHeaders"]


def test_the_coordinator_finds_every_trainer_through_the_headless_service_by_dns():
    docs = stack()
    service = find(docs, "Service", "seal-trainer-headless")
    assert service["spec"]["clusterIP"] == "None"
    env = {e["name"]: e.get("value") for e in container(docs, "seal-coordinator")["env"]}
    assert (
        env["SEAL_COORDINATOR_TRAINER_ADDRESSES"]
        == "dns:///seal-trainer-headless.seal-lab.svc.cluster.local:50052"
    )
    assert find(docs, "Deployment", "seal-coordinator")["spec"]["strategy"] == {"type": "Recreate"}


def test_a_trainer_service_with_a_cluster_ip_is_refused():
    docs = copy.deepcopy(stack())
    find(docs, "Service", "seal-trainer-headless")["spec"].pop("clusterIP")
    assert v.rule_problems(docs) == [
        "Service: the trainers' Service is not headless (clusterIP: None): DNS must name every trainer"
    ]


def test_a_model_port_missing_from_the_coordinator_policy_or_opened_to_others_is_named():
    docs = copy.deepcopy(stack())
    policy = find(docs, "NetworkPolicy", "model-services-from-coordinator")
    policy["spec"]["ingress"][0]["ports"] = [
        p for p in policy["spec"]["ingress"][0]["ports"] if p["port"] != 50052
    ]
    assert v.network_problems(docs) == [
        "NetworkPolicy: the trainer's port 50052 is not opened to the coordinator"
    ]
    docs = copy.deepcopy(stack())
    find(docs, "NetworkPolicy", "model-services-from-coordinator")["spec"]["ingress"][0]["from"].append(
        {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "bench"}}}
    )
    assert len(v.network_problems(docs)) == 3 and all(
        "open to ['bench']" in p for p in v.network_problems(docs)
    )


def test_without_the_default_deny_or_with_the_store_open_to_others_the_policy_check_fails():
    docs = [d for d in stack() if d["metadata"]["name"] != "default-deny-ingress"]
    assert v.network_problems(docs) == [
        "no default-deny ingress NetworkPolicy (podSelector {} with no ingress rule)"
    ]
    docs = copy.deepcopy(stack())
    rule = find(docs, "NetworkPolicy", "store-from-seal-services")["spec"]["ingress"][0]
    rule["from"][0]["podSelector"]["matchExpressions"][0]["values"].append("bench")
    assert v.network_problems(docs) == ["NetworkPolicy: the store's port 9000 is open to ['bench']"]


def test_no_committed_secret_holds_a_value_and_the_placeholder_is_refused_by_the_services():
    from seal_lab.security import AuthSettings

    secrets = [d for path in K8S.rglob("*.yaml") for d in v.read_documents(path) if d.get("kind") == "Secret"]
    assert {d["metadata"]["name"] for d in secrets} == {
        "seal-auth",
        "seal-store-credentials",
        "seal-store-root",
        "seal-tls",
    }
    assert [p for d in secrets for p in v.secret_problems(d)] == []
    with pytest.raises(ValueError, match="shorter than 16"):
        AuthSettings(token=v.PLACEHOLDER)
    real = {"kind": "Secret", "metadata": {"name": "seal-auth"}, "stringData": {"token": "9f" * 24}}
    assert v.secret_problems(real) == [f"Secret/seal-auth: token is not the placeholder {v.PLACEHOLDER}"]
    assert v.secret_problems({"kind": "Secret", "metadata": {"name": "x"}, "data": {"token": "YQ=="}})


def test_the_store_is_the_image_compose_pins_and_keeps_its_data_on_a_claim():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    pinned = compose["services"]["store"]["image"].split(":-", 1)[1].rstrip("}")
    store = find(stack(), "StatefulSet", "seal-store")
    assert store["spec"]["template"]["spec"]["containers"][0]["image"] == pinned
    assert store["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_the_gpu_overlay_asks_each_trainer_for_one_gpu_on_the_cuda_image():
    patch = v.read_documents(K8S / "overlays" / "gpu" / "trainer-gpu.yaml")[0]
    trainer = patch["spec"]["template"]["spec"]["containers"][0]
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert trainer["image"].startswith("seal-lab-cuda:")
    assert {"name": "SEAL_MODEL_DEVICE", "value": "cuda"} in trainer["env"]
    cpu = yaml.safe_load((K8S / "overlays" / "cpu" / "kustomization.yaml").read_text())
    assert "patchesStrategicMerge" not in cpu  # CPU trainers: base's, no GPU request


def _with_common_labels(docs: list[dict]) -> list[dict]:
    """What kustomize's commonLabels does to NetworkPolicies' pod selectors (base/kustomization.yaml's labels
    added to every matchLabels it renders, the `from` peers' included)."""
    common = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["commonLabels"]
    docs = copy.deepcopy(docs)
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        selectors = [policy["spec"]["podSelector"]] + [
            peer["podSelector"]
            for rule in policy["spec"].get("ingress") or []
            for peer in rule.get("from") or []
            if "podSelector" in peer
        ]
        for selector in selectors:
            if selector:
                selector.setdefault("matchLabels", {}).update(common)
    return docs


def test_the_bench_job_is_let_through_to_the_coordinator_by_the_policy_as_the_overlays_render_it():
    rendered = _with_common_labels(stack())
    job = find(v.read_documents(K8S / "jobs" / "bench-conditions.yaml"), "Job", "seal-bench-conditions")
    assert v.api_client_problems(rendered, job) == []
    job["spec"]["template"]["metadata"]["labels"].pop("app.kubernetes.io/part-of")
    assert v.api_client_problems(rendered, job) == [
        "Job/seal-bench-conditions: its pod's labels match no NetworkPolicy that lets clients reach the coordinator"
    ]


def _setting_names() -> set[str]:
    """Every environment variable a seal-lab settings class reads (prefix + field, or the field's aliases)."""
    from pydantic import AliasChoices

    from seal_lab.security import AuthSettings, TlsSettings
    from seal_lab.settings import LoggingSettings, ModelSettings, StoreSettings
    from services.coordinator.settings import CoordinatorSettings
    from services.evaluator.settings import EvaluatorSettings
    from services.generator.settings import GeneratorSettings
    from services.trainer.settings import TrainerSettings

    names = set()
    for settings in (
        AuthSettings,
        TlsSettings,
        LoggingSettings,
        ModelSettings,
        StoreSettings,
        CoordinatorSettings,
        EvaluatorSettings,
        GeneratorSettings,
        TrainerSettings,
    ):
        prefix = settings.model_config["env_prefix"]
        for field, info in settings.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                names |= {str(choice) for choice in alias.choices}
            else:
                names.add(f"{prefix}{field}".upper())
    return names


def test_every_seal_variable_the_manifests_set_is_one_a_service_reads():
    files = [path for path in K8S.rglob("*.yaml") if path.name != "kustomization.yaml"]
    docs = [doc for path in files for doc in v.read_documents(path)]
    set_here = set()
    for doc in docs:
        if doc.get("kind") == "ConfigMap":
            set_here |= set(doc.get("data") or {})
        spec = v.pod_spec(doc) or {}
        for container in spec.get("containers", []):
            if container.get("image", "seal-lab").startswith("seal-lab"):  # not MinIO's own job's variables
                set_here |= {e["name"] for e in container.get("env") or []}
    seal = {name for name in set_here if name.startswith("SEAL_")}
    assert len(seal) >= 15
    assert sorted(seal - _setting_names()) == []
