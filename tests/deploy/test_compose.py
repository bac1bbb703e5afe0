"""docker-compose.yml, checked offline: no Docker engine, no network.

The compose-spec JSON schema comes from the check-jsonschema package, which
vendors it (check_jsonschema/builtin_schemas/vendor/compose-spec.json, from
github.com/compose-spec/compose-spec); the rest are the stack's own rules.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
INIT_SQL = REPO / "deploy" / "postgres" / "init-databases.sql"
PROMETHEUS_FILE = REPO / "deploy" / "prometheus" / "prometheus.yml"

SERVICES = ("tickets", "inventory", "customers", "notify", "reports")
COMPONENTS = SERVICES + ("gateway",)  # everything with a database and a migration
INFRA = ("rabbitmq", "postgres", "prometheus", "grafana")
GATEWAY_PORT = 8000


def load_compose() -> dict:
    # safe_load resolves the anchors and `<<` merge keys the way compose does.
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def compose_spec_validator():
    ref = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(ref.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def metrics_port(svc: dict) -> int:
    return int(svc["environment"]["METRICS_PORT"])


def own_port(name: str, svc: dict) -> int:
    return GATEWAY_PORT if name == "gateway" else metrics_port(svc)


def migration(name: str) -> str:
    return f"migrate-{name}"


def created_databases() -> set[str]:
    sql = re.sub(r"--[^\n]*", "", INIT_SQL.read_text())
    return {m.lower() for m in re.findall(r"CREATE\s+DATABASE\s+\"?(\w+)\"?", sql, re.IGNORECASE)}


# --- schema -----------------------------------------------------------------


def test_compose_file_validates_against_compose_spec(compose):
    errors = sorted(compose_spec_validator().iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["services"]["tickets"]["depends_on"]["rabbitmq"].update(condition="healthy"),
        lambda c: c["services"]["tickets"]["healthcheck"].update(intervall="10s"),
        lambda c: c["services"]["gateway"].update(ports="8000:8000"),
    ],
    ids=["bad-condition", "unknown-healthcheck-key", "ports-not-a-list"],
)
def test_schema_check_rejects_a_broken_file(compose, breakage):
    # Guards against a vacuous schema check (wrong or empty schema).
    broken = copy.deepcopy(compose)
    breakage(broken)
    assert list(compose_spec_validator().iter_errors(broken))


# --- shape ------------------------------------------------------------------


def test_expected_services_and_nothing_else(services):
    expected = set(INFRA) | set(COMPONENTS) | {migration(c) for c in COMPONENTS}
    assert set(services) == expected


def test_external_images_are_pinned(services):
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"
    assert services["postgres"]["image"] == "postgres:16"
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", services["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", services["grafana"]["image"])


def test_app_containers_share_one_image_built_from_the_root_dockerfile(services):
    for name in COMPONENTS + tuple(migration(c) for c in COMPONENTS):
        svc = services[name]
        assert svc["image"] == services["gateway"]["image"], name
        assert svc["build"]["context"] == ".", name
    assert (REPO / "Dockerfile").is_file()


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_the_runner(services, name):
    assert services[name]["command"] == ["python", "-m", "svc_common.runner", name]


@pytest.mark.parametrize("name", COMPONENTS)
def test_migration_is_a_one_shot_of_svc_common_migrate(services, name):
    mig = services[migration(name)]
    assert mig["command"] == ["python", "-m", "svc_common.migrate", name]
    assert mig.get("restart", "no") == "no"
    assert "healthcheck" not in mig and "ports" not in mig


def test_gateway_runs_uvicorn_module_and_is_published_on_8000(services):
    gw = services["gateway"]
    assert gw["command"] == ["python", "-m", "gateway"]
    assert any(str(p).split(":")[-2:] == ["8000", "8000"] for p in gw["ports"])
    assert gw["environment"]["JWT_SECRET"]


@pytest.mark.parametrize("name", INFRA + COMPONENTS)
def test_long_running_containers_restart_with_a_valid_policy(services, name):
    # the schema only says "string"; docker compose rejects anything else at `up`
    assert services[name].get("restart") in ("always", "unless-stopped")


# --- health and ordering ----------------------------------------------------


@pytest.mark.parametrize("name", INFRA + COMPONENTS)
def test_every_long_running_container_has_a_healthcheck(services, name):
    hc = services[name].get("healthcheck")
    assert hc and not hc.get("disable"), name
    assert hc["test"][0] in ("CMD", "CMD-SHELL") and len(hc["test"]) > 1


@pytest.mark.parametrize("name", COMPONENTS)
def test_app_healthcheck_hits_healthz_on_its_own_port_with_python(services, name):
    svc = services[name]
    test = svc["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    script = test[3]
    assert f"http://127.0.0.1:{own_port(name, svc)}/healthz" in script
    compile(script, "<healthcheck>", "exec")  # it must at least be valid Python


def test_infra_healthchecks_use_the_real_tools(services):
    assert services["rabbitmq"]["healthcheck"]["test"][1] == "rabbitmq-diagnostics"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "http://127.0.0.1:9090/-/ready" in services["prometheus"]["healthcheck"]["test"]
    assert "http://127.0.0.1:3000/api/health" in services["grafana"]["healthcheck"]["test"]


@pytest.mark.parametrize("name", COMPONENTS)
def test_component_waits_for_broker_healthy_and_its_migration_completed(services, name):
    deps = services[name]["depends_on"]
    assert deps["rabbitmq"]["condition"] == "service_healthy"
    assert deps[migration(name)]["condition"] == "service_completed_successfully"
    # no waiting on another component's migration
    others = {migration(c) for c in COMPONENTS} - {migration(name)}
    assert not others & set(deps)


@pytest.mark.parametrize("name", COMPONENTS)
def test_migration_waits_for_postgres_healthy(services, name):
    deps = services[migration(name)]["depends_on"]
    assert deps == {"postgres": {"condition": "service_healthy"}}


# --- configuration ----------------------------------------------------------


@pytest.mark.parametrize("name", COMPONENTS)
def test_amqp_uri_points_at_the_rabbitmq_service(services, name):
    for svc in (services[name], services[migration(name)]):
        uri = urlsplit(svc["environment"]["AMQP_URI"])
        assert uri.scheme == "amqp" and uri.hostname == "rabbitmq" and uri.port == 5672


@pytest.mark.parametrize("name", SERVICES)
def test_service_metrics_port_is_set(services, name):
    assert metrics_port(services[name]) == 9100


def test_each_component_has_its_own_database_created_by_the_init_script(services):
    databases = {}
    for name in COMPONENTS:
        raw = services[name]["environment"]["DATABASE_URL"]
        url = urlsplit(raw)
        # psycopg2, made cooperative by psycogreen in the runner (bench/pg_driver.py measures it)
        assert url.scheme == "postgresql+psycopg2", name
        assert url.hostname == "postgres" and url.port == 5432, name
        db = url.path.lstrip("/")
        assert db == name, f"{name} uses database {db!r}"
        # its migration must migrate the very database the service uses
        assert services[migration(name)]["environment"]["DATABASE_URL"] == raw, name
        databases[name] = db
    assert len(set(databases.values())) == len(COMPONENTS), databases
    assert set(databases.values()) <= created_databases()


def test_init_script_is_mounted_into_the_postgres_entrypoint(services):
    pg = services["postgres"]
    init_mounts = [
        (src, dst)
        for src, dst, *_ in (v.split(":") for v in pg["volumes"])
        if dst.startswith("/docker-entrypoint-initdb.d/")
    ]
    assert [((REPO / src).resolve(), dst.endswith(".sql")) for src, dst in init_mounts] == [
        (INIT_SQL, True)
    ]
    # the healthcheck user is the one that owns the databases
    assert pg["environment"]["POSTGRES_USER"] in pg["healthcheck"]["test"]


def test_init_script_creates_exactly_the_component_databases():
    assert created_databases() == set(COMPONENTS)


def test_bind_mounted_files_exist(services):
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (REPO / src).exists(), f"{name}: {src}"


# --- prometheus ---------------------------------------------------------------


# rabbitmq_prometheus' per-object endpoint: metrics labelled by queue (dead-letter alert, dashboards)
METRICS_PATHS = {"rabbitmq": "/metrics/per-object"}


def prometheus_targets() -> dict[str, set[str]]:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    targets: dict[str, set[str]] = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == METRICS_PATHS.get(job["job_name"], "/metrics"), job["job_name"]
        for static in job.get("static_configs", []):
            targets.setdefault(job["job_name"], set()).update(static["targets"])
    return targets


def test_prometheus_mounts_the_config_and_the_alert_rules(services):
    prom = services["prometheus"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prom["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    assert yaml.safe_load(PROMETHEUS_FILE.read_text())["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_prometheus_scrapes_rabbitmq_per_queue():
    assert "rabbitmq:15692" in prometheus_targets()["rabbitmq"]


def test_grafana_is_local_only_and_waits_for_prometheus(services):
    graf = services["grafana"]
    assert graf["ports"] == ["127.0.0.1:3000:3000"]
    assert graf["depends_on"] == {"prometheus": {"condition": "service_healthy"}}


@pytest.mark.parametrize("name", COMPONENTS)
def test_prometheus_scrapes_every_component_on_its_port(services, name):
    targets = prometheus_targets()
    assert f"{name}:{own_port(name, services[name])}" in targets.get(name, set())


def test_prometheus_job_names_are_unique():
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    names = [job["job_name"] for job in config["scrape_configs"]]
    assert len(names) == len(set(names))
