"""Start, watch, kill and restart the five services and the gateway as local processes.

Each component gets its own DATABASE_URL and METRICS_PORT; logs go to <data_dir>/logs/.
Used by `python -m devstack` (embedded default), the end-to-end tests and bench/.

A service may run as several instances: "tickets" is the first, "tickets-2", "tickets-3", ... are
more, each its own process with its own METRICS_PORT (and log file), on the service's DATABASE_URL
and the same broker vhost. Instances of a service share its RPC queue and event queues; their
outbox relays share the outbox (FOR UPDATE SKIP LOCKED on PostgreSQL). See `scale()`.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("customers", "inventory", "tickets", "notify", "reports")
COMPONENTS = SERVICES + ("gateway",)
PYTHONPATH = os.pathsep.join([str(ROOT)] + [str(ROOT / "services" / s) for s in SERVICES])


def service_of(name: str) -> str:
    """The component an instance name runs: "tickets-2" → "tickets"; "tickets" → "tickets"."""
    base, _, number = name.rpartition("-")
    if base in COMPONENTS and number.isdigit():
        return base
    if name in COMPONENTS:
        return name
    raise ValueError(f"unknown component or instance name {name!r}")


def instance_name(service: str, number: int) -> str:
    """The 1st instance keeps the service's own name; the n-th is "<service>-<n>"."""
    return service if number == 1 else f"{service}-{number}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StackConfig:
    amqp_uri: str
    database_url: Callable[[str], str]  # component name → its DATABASE_URL
    data_dir: Path
    jwt_secret: str
    gateway_port: int = 8000
    metrics_base_port: int = 9101
    extra_env: dict[str, str] = field(default_factory=dict)


class Stack:
    def __init__(self, config: StackConfig):
        self.config = config
        self.processes: dict[str, subprocess.Popen] = {}
        self._extra_ports: dict[str, int] = {}  # METRICS_PORT of instances beyond the first, kept across restarts
        self.logs_dir = config.data_dir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.config.gateway_port}"

    def metrics_port(self, name: str) -> int:
        if name in SERVICES:
            return self.config.metrics_base_port + SERVICES.index(name)
        if service_of(name) not in SERVICES:
            raise ValueError(f"{name!r} has no metrics port (the gateway serves /metrics on its own port)")
        if name not in self._extra_ports:
            self._extra_ports[name] = _free_port()
        return self._extra_ports[name]

    def instances(self, service: str) -> list[str]:
        """The running instances of a service, first one first."""
        names = [n for n in self.processes if service_of(n) == service]
        return sorted(names, key=lambda n: 1 if n == service else int(n.rpartition("-")[2]))

    def scale(self, service: str, count: int, wait: bool = True, timeout: float = 60) -> list[str]:
        """Run exactly `count` instances of a service: start the missing ones (and wait until each is
        ready), stop the surplus gracefully (SIGTERM), highest numbers first. Returns the instance names."""
        if service not in SERVICES:
            raise ValueError(f"only services scale, not {service!r}")
        wanted = [instance_name(service, i) for i in range(1, count + 1)]
        for name in reversed(self.instances(service)):
            if name not in wanted:
                self.kill(name, signal.SIGTERM)
        started = [name for name in wanted if name not in self.processes]
        for name in started:
            self.start(name)
        if wait:
            for name in started:
                self.wait_service_ready(name, timeout)
        return wanted

    def env(self, name: str) -> dict[str, str]:
        component = service_of(name)
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": PYTHONPATH,
            "AMQP_URI": self.config.amqp_uri,
            "DATABASE_URL": self.config.database_url(component),
            "JWT_SECRET": self.config.jwt_secret,
            "SMS_LOG_PATH": str(self.config.data_dir / "sms.log"),
            "TICKETS_STORAGE_DIR": str(self.config.data_dir / "files"),
            "PYTHONUNBUFFERED": "1",
        })
        if component == "gateway":
            env["GATEWAY_PORT"] = str(self.config.gateway_port)
            env["GATEWAY_HOST"] = "127.0.0.1"
        else:
            env["METRICS_PORT"] = str(self.metrics_port(name))
        env.update(self.config.extra_env)
        return env

    def migrate(self) -> None:
        for name in COMPONENTS:
            result = subprocess.run([sys.executable, "-m", "svc_common.migrate", name], env=self.env(name),
                                    cwd=ROOT, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"migrations of {name} failed:\n{result.stderr[-3000:]}")

    def start(self, name: str) -> subprocess.Popen:
        """Start a component, or one more instance of a service ("tickets-2")."""
        if name in self.processes and self.processes[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        if service_of(name) == "gateway" and name != "gateway":
            raise ValueError("the gateway runs as one process per port; start another Stack for a second one")
        component = service_of(name)
        command = [sys.executable, "-m", "gateway"] if component == "gateway" else \
            [sys.executable, "-m", "svc_common.runner", component]
        log = open(self.logs_dir / f"{name}.log", "ab")
        process = subprocess.Popen(command, env=self.env(name), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes[name] = process
        return process

    def start_all(self) -> None:
        for name in COMPONENTS:
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        process.send_signal(sig)
        process.wait(timeout=30)

    def restart(self, name: str, wait: bool = False, timeout: float = 60) -> None:
        """Graceful stop (SIGTERM: in-flight work finishes) and start again; `wait`: until ready."""
        if name in self.processes:
            self.kill(name, signal.SIGTERM)
        self.start(name)
        if wait:
            self.wait_service_ready(name, timeout)

    def stop_all(self, timeout: float = 20) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def _get(self, url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return 0

    def wait_service_ready(self, name: str, timeout: float = 60) -> None:
        url = f"{self.gateway_url}/readyz" if name == "gateway" else \
            f"http://127.0.0.1:{self.metrics_port(name)}/readyz"
        self._wait(url, name, timeout)

    def wait_ready(self, timeout: float = 90) -> None:
        """Until the gateway's /readyz says the broker and every service answer."""
        self._wait(f"{self.gateway_url}/readyz", "gateway", timeout)

    def _wait(self, url: str, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc_name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{proc_name} exited with {process.returncode}:\n{self.log_tail(proc_name)}")
            if self._get(url) == 200:
                return
            time.sleep(0.3)
        raise TimeoutError(f"{name} not ready after {timeout}s:\n{self.log_tail(name)}")

    def timer_runs(self, name: str, method: str) -> int:
        """How many times an instance's @timer method has finished (its entrypoint latency count)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port(name)}/metrics", timeout=3) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name == "entrypoint_latency_seconds":
                for sample in family.samples:
                    if (sample.name.endswith("_count") and sample.labels.get("kind") == "timer"
                            and sample.labels.get("entrypoint") == method):
                        return int(sample.value)
        return 0

    def wait_timer_runs(self, service: str, method: str, runs: int = 2, timeout: float = 60) -> None:
        """Until every instance of `service` has run its timer `method` `runs` more times: proof that
        the timers had their chance to act, instead of a fixed sleep."""
        start = {name: self.timer_runs(name, method) for name in self.instances(service)}
        deadline = time.monotonic() + timeout
        while any(self.timer_runs(name, method) < count + runs for name, count in start.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service}.{method} did not run {runs} more times on every instance "
                                   f"within {timeout}s")
            time.sleep(0.2)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
