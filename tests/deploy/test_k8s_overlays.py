"""deploy/k8s overlays (dev, prod) and the operators component, checked offline.

The component's RabbitmqCluster and CloudNativePG Clusters are validated
against their CRD schemas (vendored subsets, schemas/README.md). The overlays
are rendered with `kubectl kustomize` (skipped where kubectl is missing) and
every rendered object is validated; then the wiring a cluster would only
reveal at run time is checked: credentials come from the operators'
generated Secrets, $(VAR) references resolve, migration Jobs are named per
release, and each PostgreSQL cluster admits every connection its component
may open at its maximum scale.
"""
from __future__ import annotations

import copy
import re
from urllib.parse import urlsplit

import pytest
from deploy_support import (
    BACKUPS,
    COMPONENTS,
    CONNECTIONS_PER_REPLICA,
    K8S,
    K8S_VERSIONS,
    OPERATORS,
    OVERLAYS,
    SERVICES,
    by_kind,
    crd_problems,
    kustomization,
    needs_kubectl,
    raw_resources,
    render,
    validate,
)

RABBITMQ = "fsp-rabbitmq"
RABBITMQ_SECRET = f"{RABBITMQ}-default-user"  # created by the RabbitMQ Cluster Operator
SUPERUSER_RESERVED = 3  # PostgreSQL's superuser_reserved_connections default
MIGRATION_CONNECTIONS = 2  # alembic: one connection, plus one while a Job is retried


def pg_cluster(component: str) -> str:
    return f"fsp-pg-{component}"


OPERATOR_DOCS = raw_resources(OPERATORS)


# --- the operators component, as written ------------------------------------------


def test_component_lists_its_files_and_patches_every_workload():
    kust = kustomization(OPERATORS)
    assert kust["kind"] == "Component"
    targets = {(p["target"]["kind"], p["target"]["name"]) for p in kust["patches"]}
    assert targets == {("Deployment", c) for c in COMPONENTS} | {("Job", f"migrate-{c}") for c in COMPONENTS}
    for p in kust["patches"]:
        assert (OPERATORS / p["path"]).is_file()


@pytest.mark.parametrize("doc", OPERATOR_DOCS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_operator_resource_validates_against_its_crd_schema(doc):
    assert crd_problems(doc) == []


@pytest.mark.parametrize(
    "kind, breakage",
    [
        ("RabbitmqCluster", lambda s: s.update(replica=3)),
        ("RabbitmqCluster", lambda s: s["rabbitmq"].update(additionalConfig=["not", "a", "string"])),
        ("RabbitmqCluster", lambda s: s["service"].update(type="Internal")),
        ("Cluster", lambda s: s.update(instance=3)),
        ("Cluster", lambda s: s["bootstrap"]["initdb"].update(databse="x")),
        ("Cluster", lambda s: s.update(primaryUpdateStrategy="sometimes")),
        ("Cluster", lambda s: s.pop("instances")),
    ],
    ids=["rmq-typo", "rmq-type", "rmq-enum", "pg-typo", "pg-nested-typo", "pg-enum", "pg-required"],
)
def test_crd_schema_check_rejects_a_broken_resource(kind, breakage):
    # Guards against a vacuous check (a schema that accepts anything).
    broken = copy.deepcopy(next(d for d in OPERATOR_DOCS if d["kind"] == kind))
    breakage(broken["spec"])
    assert crd_problems(broken)


def test_rabbitmq_is_a_three_node_cluster_with_quorum_capable_settings():
    rmq = by_kind(OPERATOR_DOCS, "RabbitmqCluster")[RABBITMQ]
    spec = rmq["spec"]
    # an odd number of nodes >= 3: quorum queues and Khepri/Raft keep a majority through one loss
    assert spec["replicas"] == 3
    config = dict(
        line.split("=", 1)
        for line in (ln.strip() for ln in spec["rabbitmq"]["additionalConfig"].splitlines())
        if line and not line.startswith("#")
    )
    config = {k.strip(): v.strip() for k, v in config.items()}
    assert config["cluster_partition_handling"] == "pause_minority"
    # the dead-letter alert and dashboards read rabbitmq_queue_messages{queue=...}
    assert config["prometheus.return_per_object_metrics"] == "true"
    anti = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    assert spec["service"]["annotations"]["prometheus.io/port"] == "15692"


def test_one_postgres_cluster_per_component_owning_its_database():
    clusters = by_kind(OPERATOR_DOCS, "Cluster")
    assert set(clusters) == {pg_cluster(c) for c in COMPONENTS}
    for c in COMPONENTS:
        initdb = clusters[pg_cluster(c)]["spec"]["bootstrap"]["initdb"]
        assert initdb == {"database": c, "owner": c}  # the -app Secret then holds this owner's credentials


# --- rendered overlays --------------------------------------------------------------


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request):
    if not (K8S / "overlays" / request.param / "kustomization.yaml").is_file():
        pytest.fail(f"overlay {request.param} missing")
    return request.param, render(K8S / "overlays" / request.param)


def env_list(container: dict) -> list[dict]:
    return container.get("env", [])


def secret_source(var: dict) -> tuple[str, str] | None:
    ref = var.get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def expanded(container: dict, name: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """The value of env `name` and, for each $(VAR) it uses, the Secret key VAR comes from.

    Kubernetes only expands $(VAR) for variables defined earlier in the list; a later
    or unknown one stays literally "$(VAR)" in the process' environment.
    """
    env = env_list(container)
    names = [v["name"] for v in env]
    assert name in names, f"{container['name']}: no {name}"
    var = env[names.index(name)]
    value = var.get("value")
    assert value is not None, f"{container['name']}: {name} has no value"
    sources = {}
    for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value):
        assert ref in names[: names.index(name)], f"{container['name']}: $({ref}) not defined before {name}"
        src = secret_source(env[names.index(ref)])
        assert src, f"{container['name']}: {ref} is not read from a Secret"
        sources[ref] = src
    return value, sources


def workloads(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(component, object, container) for every Deployment and migration Job."""
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            (container,) = d["spec"]["template"]["spec"]["containers"]
            component = container["command"][-1]
            out.append((component, d, container))
    return out


@needs_kubectl
def test_overlay_renders_every_object_valid(overlay):
    name, docs = overlay
    assert docs
    for version in K8S_VERSIONS:
        for d in docs:
            validate(d, version)


@needs_kubectl
def test_overlay_puts_everything_in_its_namespace(overlay):
    name, docs = overlay
    namespaces = {d["metadata"].get("namespace") for d in docs}
    assert len(namespaces) == 1 and None not in namespaces
    assert namespaces == {kustomization(K8S / "overlays" / name)["namespace"]}


@needs_kubectl
def test_overlay_contains_the_base_and_the_operators(overlay):
    _, docs = overlay
    assert set(by_kind(docs, "Deployment")) == set(COMPONENTS)
    assert set(by_kind(docs, "ScaledObject")) == set(SERVICES)
    assert set(by_kind(docs, "PodDisruptionBudget")) == set(COMPONENTS)
    assert set(by_kind(docs, "RabbitmqCluster")) == {RABBITMQ}
    assert set(by_kind(docs, "Cluster")) == {pg_cluster(c) for c in COMPONENTS}


@needs_kubectl
def test_migration_jobs_are_named_after_the_release_being_deployed(overlay):
    # A new release creates new Jobs (each runs once); re-applying the same release
    # finds the same names and changes nothing; no Job runs per replica.
    name, docs = overlay
    version = by_kind(docs, "ConfigMap")["fsp-release"]["data"]["version"]
    assert set(by_kind(docs, "Job")) == {f"migrate-{c}-{version}" for c in COMPONENTS}
    # ...and the release is the image tag the Jobs and Deployments run
    for _, obj, container in workloads(docs):
        assert container["image"].endswith(f":{version}"), (obj["metadata"]["name"], container["image"])


@needs_kubectl
def test_amqp_uri_is_built_from_the_rabbitmq_operators_secret(overlay):
    _, docs = overlay
    for component, obj, container in workloads(docs):
        value, sources = expanded(container, "AMQP_URI")
        uri = urlsplit(value)
        assert uri.scheme == "amqp" and uri.hostname == RABBITMQ and uri.port == 5672, value
        assert set(sources.values()) == {(RABBITMQ_SECRET, "username"), (RABBITMQ_SECRET, "password")}


@needs_kubectl
def test_database_url_is_built_from_the_component_clusters_secret(overlay):
    _, docs = overlay
    clusters = by_kind(docs, "Cluster")
    for component, obj, container in workloads(docs):
        value, sources = expanded(container, "DATABASE_URL")
        url = urlsplit(value.replace("$(", "").replace(")", ""))
        cluster = pg_cluster(component)
        assert url.scheme == "postgresql+psycopg2", value
        # the primary's Service, the cluster's own database
        assert url.hostname == f"{cluster}-rw" and url.port == 5432, value
        assert url.path.lstrip("/") == clusters[cluster]["spec"]["bootstrap"]["initdb"]["database"] == component
        assert set(sources.values()) == {(f"{cluster}-app", "username"), (f"{cluster}-app", "password")}


@needs_kubectl
def test_database_tls_is_verified_against_the_clusters_ca(overlay):
    _, docs = overlay
    for component, obj, container in workloads(docs):
        env = {v["name"]: v for v in env_list(container)}
        assert env["DATABASE_SSL"]["value"] == "verify"
        ca_path = env["DATABASE_SSL_CA"]["value"]
        mount = next(m for m in container["volumeMounts"] if ca_path.startswith(m["mountPath"] + "/"))
        volume = next(v for v in obj["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == f"{pg_cluster(component)}-ca"
        assert ca_path.endswith("/" + volume["secret"]["items"][0]["path"])


@needs_kubectl
def test_no_workload_reads_a_hand_made_database_or_amqp_secret(overlay):
    _, docs = overlay
    for component, obj, container in workloads(docs):
        used = {src for v in env_list(container) if (src := secret_source(v))}
        allowed = {(RABBITMQ_SECRET, "username"), (RABBITMQ_SECRET, "password"),
                   (f"{pg_cluster(component)}-app", "username"), (f"{pg_cluster(component)}-app", "password")}
        if component == "gateway" and obj["kind"] == "Deployment":
            allowed.add(("fsp-gateway", "JWT_SECRET"))  # an application secret, not an operator's
        assert used <= allowed, (obj["metadata"]["name"], used - allowed)


def max_replicas(docs: list[dict], component: str) -> int:
    if component == "gateway":
        return by_kind(docs, "HorizontalPodAutoscaler")["gateway"]["spec"]["maxReplicas"]
    return by_kind(docs, "ScaledObject")[component]["spec"]["maxReplicaCount"]


def min_replicas(docs: list[dict], component: str) -> int:
    if component == "gateway":
        return by_kind(docs, "HorizontalPodAutoscaler")["gateway"]["spec"]["minReplicas"]
    return by_kind(docs, "ScaledObject")[component]["spec"]["minReplicaCount"]


@needs_kubectl
@pytest.mark.parametrize("component", COMPONENTS)
def test_postgres_admits_every_connection_at_maximum_scale(overlay, component):
    # Each replica may hold DB_POOL_SIZE + MAX_WORKERS connections (docs/configuration.md);
    # past max_connections the newest replicas fail their queries under load.
    _, docs = overlay
    cluster = by_kind(docs, "Cluster")[pg_cluster(component)]
    allowed = int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])
    needed = CONNECTIONS_PER_REPLICA * max_replicas(docs, component) + SUPERUSER_RESERVED + MIGRATION_CONNECTIONS
    assert allowed >= needed, f"{component}: max_connections {allowed} < {needed}"


@needs_kubectl
def test_prod_runs_two_of_everything_on_ha_backends():
    docs = render(K8S / "overlays" / "prod")
    for c in COMPONENTS:
        assert min_replicas(docs, c) >= 2, c
        assert by_kind(docs, "Deployment")[c]["spec"]["replicas"] >= 2, c
        pdb = by_kind(docs, "PodDisruptionBudget")[c]["spec"]
        # a drain must stay possible at the minimum: some pod may always be evicted
        if "minAvailable" in pdb:
            assert pdb["minAvailable"] < min_replicas(docs, c), c
    assert by_kind(docs, "RabbitmqCluster")[RABBITMQ]["spec"]["replicas"] == 3
    for c in COMPONENTS:
        assert by_kind(docs, "Cluster")[pg_cluster(c)]["spec"]["instances"] >= 2, c
    (ing,) = by_kind(docs, "Ingress").values()
    assert ing["spec"]["tls"][0]["hosts"] == [r["host"] for r in ing["spec"]["rules"]]
    assert by_kind(docs, "ConfigMap")["fsp-config"]["data"]["ALLOW_SIGNUP"] == "false"


@needs_kubectl
def test_prod_resources_have_requests_within_limits():
    docs = render(K8S / "overlays" / "prod")
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}

    def q(v):
        num, unit = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(v)).groups()
        return float(num) * units[unit]

    for _, obj, container in workloads(docs):
        res = container["resources"]
        for r in ("cpu", "memory"):
            assert q(res["requests"][r]) <= q(res["limits"][r]), (obj["metadata"]["name"], r)


@needs_kubectl
def test_dev_and_prod_release_different_jobs():
    dev = set(by_kind(render(K8S / "overlays" / "dev"), "Job"))
    prod = set(by_kind(render(K8S / "overlays" / "prod"), "Job"))
    assert dev and prod and not dev & prod


# --- backups (prod) ------------------------------------------------------------------


@pytest.mark.parametrize("doc", raw_resources(BACKUPS), ids=lambda d: d["metadata"]["name"])
def test_scheduled_backup_validates_against_its_crd_schema(doc):
    assert crd_problems(doc) == []


@pytest.mark.parametrize("breakage", [
    lambda spec: spec.update(schedule="0 2 * * *"),          # five fields: CNPG wants seconds first
    lambda spec: spec.update(method="pg_dump"),
    lambda spec: spec.pop("cluster"),
])
def test_scheduled_backup_check_rejects_a_broken_one(breakage):
    doc = copy.deepcopy(raw_resources(BACKUPS)[0])
    breakage(doc["spec"])
    assert crd_problems(doc)


@needs_kubectl
def test_prod_backs_up_every_postgres_cluster_and_dev_does_not():
    prod = render(K8S / "overlays" / "prod")
    clusters = by_kind(prod, "Cluster")
    scheduled = {doc["spec"]["cluster"]["name"]: doc for doc in by_kind(prod, "ScheduledBackup").values()}
    assert set(scheduled) == {pg_cluster(c) for c in COMPONENTS}
    for c in COMPONENTS:
        store = clusters[pg_cluster(c)]["spec"]["backup"]["barmanObjectStore"]
        assert store["destinationPath"].startswith("s3://")
        credentials = store["s3Credentials"]
        assert {ref["name"] for ref in credentials.values()} == {"fsp-backup-s3"}
        assert scheduled[pg_cluster(c)]["spec"]["method"] == "barmanObjectStore"
    dev = render(K8S / "overlays" / "dev")
    assert not by_kind(dev, "ScheduledBackup")
    assert all("backup" not in cluster["spec"] for cluster in by_kind(dev, "Cluster").values())
