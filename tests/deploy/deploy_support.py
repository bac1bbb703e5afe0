"""Shared helpers of the deploy tests: manifests, offline schema checks, the queues and metrics of the code.

Schemas, all offline:
- Kubernetes built-in kinds: kubernetes-validate (ships the Kubernetes JSON schemas), strict.
- KEDA (keda.sh/v1alpha1): cloudcoil-models-keda, pydantic models generated from KEDA's CRDs;
  pydantic ignores unknown fields, so `crd_problems` also compares the input with what the
  model kept, which turns a misspelt or unknown field into an error.
- RabbitmqCluster and CloudNativePG Cluster: schemas/ (vendored subsets, see schemas/README.md).
"""
from __future__ import annotations

import codecs
import functools
import importlib
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
OPERATORS = K8S / "components" / "operators"
BACKUPS = K8S / "components" / "backups"
OVERLAYS = ("dev", "prod")
SCHEMAS = Path(__file__).resolve().parent / "schemas"

SERVICES = ("tickets", "inventory", "customers", "notify", "reports")
COMPONENTS = SERVICES + ("gateway",)
# DB_POOL_SIZE (MAX_WORKERS + 4) + MAX_WORKERS overflow per process, default MAX_WORKERS=16
# (docs/configuration.md, svc_common/db.py make_engine).
MAX_WORKERS = 16
CONNECTIONS_PER_REPLICA = (MAX_WORKERS + 4) + MAX_WORKERS

K8S_VERSIONS = ("1.29", kubernetes_validate.latest_version())


# --- manifests ----------------------------------------------------------------


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization(folder: Path) -> dict:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def raw_resources(folder: Path) -> list[dict]:
    """The objects a kustomization lists in `resources` (files only), as written."""
    docs = []
    for name in kustomization(folder).get("resources", []):
        if (folder / name).is_file():
            docs += load_yaml_docs(folder / name)
    return docs


def needs_tool(name: str, how_to_install: str):
    """The test runs the real tool; without it the test fails saying how to install it (never skips)."""
    def decorate(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            if shutil.which(name) is None:
                pytest.fail(f"{name} is not installed; {how_to_install}", pytrace=False)
            return test(*args, **kwargs)
        return run
    return decorate


needs_kubectl = needs_tool("kubectl", "install kubectl ≥ 1.14 (it has kustomize built in)")
needs_promtool = needs_tool("promtool", "install the Debian package `prometheus` (apt-get install prometheus)")


@cache
def _render(folder: str) -> str:
    return subprocess.run(["kubectl", "kustomize", folder], check=True, capture_output=True, text=True,
                          timeout=120).stdout


def render(folder: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(_render(str(folder))) if d]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# --- schema validation --------------------------------------------------------


def _dropped(given, kept, path="") -> list[str]:
    """Keys present in `given` but missing from `kept` (what a model silently ignored)."""
    out = []
    if isinstance(given, dict) and isinstance(kept, dict):
        for key, value in given.items():
            if key not in kept:
                out.append(f"{path}/{key}: unknown field")
            else:
                out += _dropped(value, kept[key], f"{path}/{key}")
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (g, k) in enumerate(zip(given, kept)):
            out += _dropped(g, k, f"{path}/{i}")
    return out


@cache
def _keda_models() -> dict:
    from cloudcoil.models.keda import v1alpha1

    return {"ScaledObject": v1alpha1.ScaledObject, "TriggerAuthentication": v1alpha1.TriggerAuthentication}


@cache
def _vendored(kind_group: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{kind_group}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


VENDORED = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmqcluster.rabbitmq.com-v1beta1",
    ("postgresql.cnpg.io/v1", "Cluster"): "cluster.postgresql.cnpg.io-v1",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): "scheduledbackup.postgresql.cnpg.io-v1",
}


def crd_problems(doc: dict) -> list[str]:
    """Schema problems of a custom resource; empty when it validates. Unknown kinds are a problem."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key[0] == "keda.sh/v1alpha1" and key[1] in _keda_models():
        import pydantic

        try:
            model = _keda_models()[key[1]].model_validate(doc)
        except pydantic.ValidationError as exc:
            return [str(exc)]
        return _dropped(doc, model.model_dump(by_alias=True, exclude_unset=True, mode="json"))
    if key in VENDORED:
        errors = _vendored(VENDORED[key]).iter_errors(doc)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    return [f"no schema for {key}"]


def is_custom(doc: dict) -> bool:
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    return "." in group and not group.endswith(".k8s.io")


def validate(doc: dict, version: str) -> None:
    """Raise when `doc` does not validate (built-in kinds for Kubernetes `version`)."""
    if is_custom(doc):
        problems = crd_problems(doc)
        if problems:
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']}: " + "; ".join(problems))
    else:
        kubernetes_validate.validate(doc, version, strict=True)


# --- what the code declares ---------------------------------------------------


def service_class(name: str):
    from svc_common.service_classes import load_service_class

    return load_service_class(name)


@cache
def declared_queues() -> dict[str, dict[str, frozenset[str]]]:
    """Per service: {"rpc": {...}, "event": {...}} queue names exactly as nameko declares them.

    Builds each service's container (no broker connection) and runs the setup of its
    RPC consumer and event handlers, which is where nameko names their queues.
    """
    from nameko.containers import ServiceContainer
    from nameko.events import EventHandler
    from nameko.extensions import iter_extensions
    from nameko.rpc import RpcConsumer

    out = {}
    for name in SERVICES:
        container = ServiceContainer(service_class(name), {"AMQP_URI": "memory://"})
        rpc, event = set(), set()
        for entrypoint in container.entrypoints:
            for ext in (entrypoint, *iter_extensions(entrypoint)):
                if isinstance(ext, RpcConsumer):
                    ext.setup()
                    rpc.add(ext.queue.name)
                elif isinstance(ext, EventHandler):
                    ext.setup()
                    event.add(ext.queue.name)
        out[name] = {"rpc": frozenset(rpc), "event": frozenset(event)}
    return out


@cache
def derived_queues() -> frozenset[str]:
    """The retry and dead-letter queues svc_common.consumer adds to every event queue."""
    consumer = importlib.import_module("svc_common.consumer")
    from svc_common.settings import get_settings

    delays = get_settings().retry_delays
    out = set()
    for queues in declared_queues().values():
        for q in queues["event"]:
            out |= {consumer.retry_queue(q, i, d).name for i, d in enumerate(delays)}
            out.add(consumer.dead_letter_queue(q).name)
    return frozenset(out)


def entrypoints(name: str) -> dict[str, set[str]]:
    """Method names of a service by kind: "rpc" and "event" (with the event types it handles)."""
    from nameko.events import EventHandler
    from nameko.rpc import Rpc

    rpc, event, event_types = set(), set(), set()
    cls = service_class(name)
    for attr in dir(cls):
        for ep in getattr(getattr(cls, attr), "nameko_entrypoints", ()):
            if isinstance(ep, Rpc):
                rpc.add(attr)
            elif isinstance(ep, EventHandler):
                event.add(attr)
                event_types.add(ep.event_type)
    return {"rpc": rpc, "event": event, "event_types": event_types}


# --- metrics ------------------------------------------------------------------

# Metrics used by the rules/dashboards that are not ours, with where they come from.
EXTERNAL_METRICS = {
    # Prometheus' own per-target health series.
    "up": {"job", "instance"},
    # RabbitMQ rabbitmq_prometheus plugin (deps/rabbitmq_prometheus, metrics.md: "rabbitmq_queue_messages:
    # Sum of ready and unacknowledged messages"), per queue on /metrics/per-object or with
    # prometheus.return_per_object_metrics = true.
    "rabbitmq_queue_messages": {"vhost", "queue", "job", "instance"},
}
SCRAPE_LABELS = {"job", "instance"}


@cache
def code_metrics() -> dict[str, set[str]]:
    """Every series name svc_common.metrics exposes, with the labels it may carry."""
    from prometheus_client.metrics import MetricWrapperBase

    metrics = importlib.import_module("svc_common.metrics")
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",), "summary": ("_count", "_sum", "_created")}
    out = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            (family,) = obj.describe()
            labels = set(obj._labelnames) | SCRAPE_LABELS
            for suffix in suffixes[family.type]:
                out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def known_metrics() -> dict[str, set[str]]:
    return {**code_metrics(), **EXTERNAL_METRICS}


def selectors(expr: str) -> list:
    """The vector selectors of a PromQL expression (parsed by the real grammar)."""
    import promql_parser

    nodes = []
    promql_parser.walk(promql_parser.parse(expr), nodes.append)
    return [n for n in nodes if isinstance(n, promql_parser.VectorSelector)]


class Matcher:
    """A label matcher with its value unescaped as Prometheus does (promql-parser keeps the escapes)."""

    def __init__(self, raw):
        self.name = raw.name
        self.op = raw.op
        self.value = codecs.decode(raw.value, "unicode_escape")


def matchers(selector) -> list[Matcher]:
    return [Matcher(m) for m in selector.matchers.matchers]
