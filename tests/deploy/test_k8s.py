"""deploy/k8s/base (the Kustomize base), checked offline against Kubernetes' and KEDA's schemas.

kubernetes-validate ships the Kubernetes JSON schemas, so no cluster and no
network are needed. Strict mode rejects unknown fields, which catches typos
such as `livenesProbe` that a cluster would silently drop. KEDA's kinds are
checked against KEDA's CRD models (deploy_support.crd_problems), and the
ScaledObjects' queue names against the queues nameko declares for the code.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from deploy_support import BASE, K8S_VERSIONS, crd_problems, declared_queues, derived_queues, needs_kubectl, validate

REPO = Path(__file__).resolve().parents[2]

SERVICES = ("tickets", "inventory", "customers", "notify", "reports")
COMPONENTS = SERVICES + ("gateway",)
APP_IMAGE = "fsp-app"
CONFIGMAP = "fsp-config"
AMQP_SECRET = "fsp-amqp"
DOCKERFILE_UID = 10001  # `USER 10001:10001` in the root Dockerfile


def load_kustomization() -> dict:
    return yaml.safe_load((BASE / "kustomization.yaml").read_text())


def load_resources() -> list[dict]:
    docs = []
    for name in load_kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    return docs


RESOURCES = load_resources()


def objects(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in RESOURCES if d["kind"] == kind}


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def secret_ref(container: dict, var: str) -> tuple[str, str] | None:
    ref = env_of(container).get(var, {}).get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def port_names_and_numbers(container: dict) -> set:
    return {p.get("name") for p in container.get("ports", [])} | {
        p["containerPort"] for p in container.get("ports", [])
    }


def quantity(value) -> float:
    """CPU cores or memory bytes from a Kubernetes quantity ("500m", "512Mi", 1)."""
    m = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|k|M|G)?", str(value))
    assert m, f"unparsable quantity {value!r}"
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return float(m.group(1)) * scale[m.group(2)]


def deployment_problems(dep: dict) -> list[str]:
    """What a Deployment of ours lacks; empty when it is fine."""
    problems = []
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    if spec.get("terminationGracePeriodSeconds") != 30:
        problems.append("terminationGracePeriodSeconds is not 30")
    selector = dep["spec"]["selector"]["matchLabels"]
    if not selector.items() <= pod["metadata"].get("labels", {}).items():
        problems.append("selector does not match the pod labels")
    for c in spec["containers"]:
        ports = port_names_and_numbers(c)
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet", {})
            if get.get("path") != path:
                problems.append(f"{c['name']}: {probe} does not GET {path}")
            elif get.get("port") not in ports:
                problems.append(f"{c['name']}: {probe} port {get.get('port')} is not a container port")
        res = c.get("resources", {})
        for bound in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(bound, {}):
                    problems.append(f"{c['name']}: no {bound}.{r}")
        for r in ("cpu", "memory"):
            if r in res.get("requests", {}) and r in res.get("limits", {}):
                if quantity(res["requests"][r]) > quantity(res["limits"][r]):
                    problems.append(f"{c['name']}: {r} request above its limit")
    ann = pod["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics":
        problems.append("no prometheus scrape annotations")
    elif not any(int(ann.get("prometheus.io/port", 0)) in port_names_and_numbers(c) for c in spec["containers"]):
        problems.append("prometheus.io/port is not a container port")
    return problems


# --- the kustomization --------------------------------------------------------


def test_kustomization_lists_every_manifest_and_only_existing_ones():
    listed = load_kustomization()["resources"]
    assert len(listed) == len(set(listed))
    on_disk = {p.name for p in BASE.glob("*.y*ml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk


def test_deploy_k8s_itself_is_the_base():
    # `kubectl apply -k deploy/k8s` (docs/operations.md) keeps meaning the base
    root = yaml.safe_load((BASE.parent / "kustomization.yaml").read_text())
    assert root["resources"] == ["base"] and set(root) <= {"apiVersion", "kind", "resources"}


def test_kustomization_is_a_base_and_pins_the_app_image():
    kust = load_kustomization()
    assert kust["kind"] == "Kustomization"
    assert "namespace" not in kust  # overlays choose the namespace
    assert [i["name"] for i in kust["images"]] == [APP_IMAGE]


def test_every_object_is_unique_and_labelled_part_of_fsp():
    keys = [(d["kind"], d["metadata"]["name"]) for d in RESOURCES]
    assert len(keys) == len(set(keys))
    for d in RESOURCES:
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "fsp", d["metadata"]["name"]


# --- schemas ------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", RESOURCES, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_validates_against_kubernetes_or_crd_schema(doc, version):
    # built-in kinds against Kubernetes `version`; KEDA kinds against KEDA's CRD models
    validate(doc, version)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda so: so["spec"].update(minReplicas=1),  # HPA spelling, not KEDA's minReplicaCount
        lambda so: so["spec"].update(maxReplicaCount="many"),
        lambda so: so["spec"]["triggers"][0].update(authRef={"name": "x"}),
        lambda so: so["spec"]["scaleTargetRef"].pop("name"),
    ],
    ids=["unknown-field", "wrong-type", "unknown-trigger-field", "missing-required"],
)
def test_keda_check_rejects_a_broken_scaled_object(breakage):
    broken = copy.deepcopy(objects("ScaledObject")["tickets"])
    breakage(broken)
    assert crd_problems(broken)


def test_schema_check_rejects_a_misspelt_field():
    # Guards against a vacuous check (e.g. a schema that accepts anything).
    broken = copy.deepcopy(objects("Deployment")["tickets"])
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


# --- workloads ----------------------------------------------------------------


def test_one_deployment_per_component():
    assert set(objects("Deployment")) == set(COMPONENTS)


@pytest.mark.parametrize("name", COMPONENTS)
def test_deployment_has_probes_resources_grace_and_scrape_annotations(name):
    assert deployment_problems(objects("Deployment")[name]) == []


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda c, p: c.pop("readinessProbe"), "readinessProbe does not GET /readyz"),
        (lambda c, p: c["livenessProbe"]["httpGet"].update(path="/metrics"), "livenessProbe does not GET /healthz"),
        (lambda c, p: c["resources"].pop("limits"), "no limits.memory"),
        (lambda c, p: c["resources"]["requests"].update(memory="1Gi"), "memory request above its limit"),
        (lambda c, p: p.update(terminationGracePeriodSeconds=5), "terminationGracePeriodSeconds is not 30"),
    ],
)
def test_deployment_check_catches_a_broken_deployment(breakage, expected):
    broken = copy.deepcopy(objects("Deployment")["tickets"])
    pod = broken["spec"]["template"]["spec"]
    breakage(pod["containers"][0], pod)
    assert any(expected in p for p in deployment_problems(broken))


@pytest.mark.parametrize("name", SERVICES)
def test_service_deployment_runs_the_runner_and_serves_metrics_port(name):
    (c,) = objects("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["python", "-m", "svc_common.runner", name]
    port = int(env_of(c)["METRICS_PORT"]["value"])
    assert port in port_names_and_numbers(c)


def test_gateway_deployment_runs_the_gateway_on_8000():
    (c,) = objects("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["python", "-m", "gateway"]
    assert 8000 in port_names_and_numbers(c)
    assert secret_ref(c, "JWT_SECRET") == ("fsp-gateway", "JWT_SECRET")


def test_gateway_service_routes_to_the_gateway_pods():
    svc = objects("Service")["gateway"]
    pod = objects("Deployment")["gateway"]["spec"]["template"]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (c,) = pod["spec"]["containers"]
    for port in svc["spec"]["ports"]:
        assert port["targetPort"] in port_names_and_numbers(c)


def test_only_the_gateway_has_a_service():
    assert set(objects("Service")) == {"gateway"}


def test_ingress_routes_to_the_gateway_service():
    (ing,) = objects("Ingress").values()
    svc = objects("Service")["gateway"]
    for rule in ing["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "gateway"
            assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}


# --- disruption and autoscaling -------------------------------------------------


@pytest.mark.parametrize("name", COMPONENTS)
def test_each_component_has_a_pdb_selecting_its_pods(name):
    pdb = objects("PodDisruptionBudget")[name]
    pod_labels = objects("Deployment")[name]["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # never 0 unavailable: that would block every node drain
    assert pdb["spec"].get("maxUnavailable", 1) >= 1


def test_gateway_scales_on_cpu():
    hpa = objects("HorizontalPodAutoscaler")["gateway"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # the services are scaled by KEDA, not by a CPU HPA
    assert set(objects("HorizontalPodAutoscaler")) == {"gateway"}


def test_keda_authenticates_with_the_management_uri_of_the_amqp_secret():
    auth = objects("TriggerAuthentication")["fsp-rabbitmq"]
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "host", "name": AMQP_SECRET, "key": "MANAGEMENT_URI"}]


def test_one_scaled_object_per_service():
    assert set(objects("ScaledObject")) == set(SERVICES)


@pytest.mark.parametrize("name", SERVICES)
def test_scaled_object_triggers_on_exactly_the_queues_the_service_consumes(name):
    so = objects("ScaledObject")[name]
    assert so["spec"]["scaleTargetRef"] == {"name": name}
    assert name in objects("Deployment")
    triggers = so["spec"]["triggers"]
    declared = declared_queues()[name]
    exact = {t["metadata"]["queueName"] for t in triggers if t["metadata"].get("useRegex") != "true"}
    patterns = [t["metadata"]["queueName"] for t in triggers if t["metadata"].get("useRegex") == "true"]
    # its RPC queue by name; its event queues through regexes that match exactly them among every
    # queue any service declares, retry and dead-letter queues included (those have no consumer,
    # so their depth says nothing about this service's load)
    assert exact == declared["rpc"]
    everything = {q for queues in declared_queues().values() for q in queues["rpc"] | queues["event"]}
    everything |= derived_queues()
    matched = {q for q in everything if any(re.search(p, q) for p in patterns)}
    assert matched == declared["event"]
    for t in triggers:
        assert t["type"] == "rabbitmq"
        assert t["authenticationRef"]["name"] in objects("TriggerAuthentication")
        assert t["metadata"]["mode"] == "QueueLength" and int(t["metadata"]["value"]) > 0
        # regexes need the management API; credentials only through the TriggerAuthentication
        assert t["metadata"]["protocol"] == "http" and "host" not in t["metadata"]
        if t["metadata"].get("useRegex") == "true":
            assert t["metadata"]["operation"] == "sum"


def test_a_new_event_handler_is_matched_without_a_manifest_change():
    (pattern,) = [t["metadata"]["queueName"] for t in objects("ScaledObject")["tickets"]["spec"]["triggers"]
                  if t["metadata"].get("useRegex") == "true"]
    assert re.search(pattern, "evt-inventory-stock.low--tickets.on_stock_low")
    assert not re.search(pattern, "evt-inventory-stock.low--tickets.on_stock_low.dlq")
    assert not re.search(pattern, "evt-inventory-stock.low--reports.on_stock_low")


@pytest.mark.parametrize("name", SERVICES)
def test_scaled_object_keeps_at_least_one_replica(name):
    spec = objects("ScaledObject")[name]["spec"]
    # RPC callers wait synchronously and the outbox relay runs in the service: never scale to zero
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]


@pytest.mark.parametrize("name", COMPONENTS)
def test_each_component_has_a_migration_job_on_the_same_database(name):
    job = objects("Job").get(f"migrate-{name}")
    assert job, f"no migration Job for {name}"
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] in ("Never", "OnFailure")
    (mig,) = spec["containers"]
    assert mig["command"] == ["python", "-m", "svc_common.migrate", name]
    assert mig["resources"]["limits"] and mig["resources"]["requests"]
    (app,) = objects("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    assert secret_ref(mig, "DATABASE_URL") == secret_ref(app, "DATABASE_URL") == (f"fsp-{name}", "DATABASE_URL")


def all_pod_specs() -> list:
    params = []
    for d in RESOURCES:
        if d["kind"] in ("Deployment", "Job"):
            where = f"{d['kind']}/{d['metadata']['name']}"
            params.append(pytest.param(where, d["spec"]["template"]["spec"], id=where))
    return params


@pytest.mark.parametrize("where, pod", all_pod_specs())
def test_pods_take_secrets_from_secrets_and_shared_env_from_the_configmap(where, pod):
    assert CONFIGMAP in objects("ConfigMap")
    for c in pod["containers"]:
        assert c["image"] == APP_IMAGE, where
        assert {"configMapRef": {"name": CONFIGMAP}} in c["envFrom"], where
        assert secret_ref(c, "AMQP_URI") == (AMQP_SECRET, "AMQP_URI"), where
        assert secret_ref(c, "DATABASE_URL"), where
        for var in ("AMQP_URI", "DATABASE_URL", "JWT_SECRET"):
            assert "value" not in env_of(c).get(var, {}), f"{where}: literal {var}"


@pytest.mark.parametrize("where, pod", all_pod_specs())
def test_pods_run_as_the_images_non_root_user(where, pod):
    sec = pod["securityContext"]
    assert sec["runAsNonRoot"] is True and sec["runAsUser"] == DOCKERFILE_UID, where
    for c in pod["containers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, where


def test_no_component_reads_another_components_database_secret():
    for name in COMPONENTS:
        for kind in ("Deployment", "Job"):
            obj = objects(kind)[name if kind == "Deployment" else f"migrate-{name}"]
            for c in obj["spec"]["template"]["spec"]["containers"]:
                used = {ref[0] for var in env_of(c) if (ref := secret_ref(c, var))}
                assert used <= {AMQP_SECRET, f"fsp-{name}"}, (kind, name, used)


# --- the real kustomize -------------------------------------------------------


@needs_kubectl
def test_kubectl_kustomize_renders_the_base_and_the_result_validates():
    out = subprocess.run(
        ["kubectl", "kustomize", str(BASE)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    rendered = [d for d in yaml.safe_load_all(out) if d]
    assert {(d["kind"], d["metadata"]["name"]) for d in rendered} == {
        (d["kind"], d["metadata"]["name"]) for d in RESOURCES
    }
    tag = load_kustomization()["images"][0]["newTag"]
    for d in rendered:
        validate(d, K8S_VERSIONS[-1])
        if d["kind"] in ("Deployment", "Job"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert c["image"] == f"{APP_IMAGE}:{tag}"


def test_tickets_replicas_share_one_volume_for_attachments():
    pod = objects("Deployment")["tickets"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == env["TICKETS_STORAGE_DIR"])
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = objects("PersistentVolumeClaim")[volume["persistentVolumeClaim"]["claimName"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
