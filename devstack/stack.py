"""Start, watch, kill and restart the five services and the gateway as local processes.

Each component gets its own DATABASE_URL and METRICS_PORT; logs go to <data_dir>/logs/.
Used by `python -m devstack` (embedded default), the end-to-end tests and bench/.
"""
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("customers", "inventory", "tickets", "notify", "reports")
COMPONENTS = SERVICES + ("gateway",)
PYTHONPATH = os.pathsep.join([str(ROOT)] + [str(ROOT / "services" / s) for s in SERVICES])


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
        self.logs_dir = config.data_dir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.config.gateway_port}"

    def metrics_port(self, name: str) -> int:
        return self.config.metrics_base_port + SERVICES.index(name)

    def env(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": PYTHONPATH,
            "AMQP_URI": self.config.amqp_uri,
            "DATABASE_URL": self.config.database_url(name),
            "JWT_SECRET": self.config.jwt_secret,
            "SMS_LOG_PATH": str(self.config.data_dir / "sms.log"),
            "PYTHONUNBUFFERED": "1",
        })
        if name == "gateway":
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
        command = [sys.executable, "-m", "gateway"] if name == "gateway" else \
            [sys.executable, "-m", "svc_common.runner", name]
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

    def restart(self, name: str) -> None:
        if name in self.processes:
            self.kill(name, signal.SIGTERM)
        self.start(name)

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

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
