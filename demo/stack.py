"""Start the real processes (Dify simulator, decider, ingest, …) as subprocesses and manage them.

Used by `make run`, `make demo` and the end-to-end and fault tests, so the demo a newcomer sees is
exactly what the tests exercise.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEMO_GRAPH = ROOT / "demo" / "review-loop.graph.json"
APP_TOKEN = "cp-demo-token-change-me"
DIFY_APP_KEY = "app-demo-key"
PROCESSES = ("sim", "decider", "poller", "ingest")  # what start_all() starts; console and notifier on request
REVIEWERS = [{"name": "alice", "token": "rv-alice-token", "apps": ["demo"]},
             {"name": "bob", "token": "rv-bob-token", "apps": ["demo"]}]
# A chat bot of the demo: it may decide for any reviewer, in the demo app, signing what it publishes.
DEMO_BOT = {"name": "demo-bot", "secret": "demo-bot-secret-change-me", "acts_for": ["*"], "apps": ["demo"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessStack:
    def __init__(self, workdir: Path, *, database_url: str | None = None, rabbitmq_url: str | None = None,
                 namespace: str | None = None, ports: dict[str, int] | None = None, env: dict[str, str] | None = None,
                 sim_args: list[str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = ports or {}
        self.ports = {name: ports.get(name) or free_port()
                      for name in ("sim", "ingest", "decider", "poller", "console", "notifier")}
        self.sim_args = sim_args or []
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1",
            "HITL_DATABASE_URL": database_url or f"sqlite:///{self.workdir / 'hitl.db'}",
            "HITL_RABBITMQ_URL": rabbitmq_url or os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
            "HITL_NAMESPACE": namespace or f"e{uuid.uuid4().hex[:10]}",
            "HITL_APPS": json.dumps([{"name": "demo", "checkpoint_token": APP_TOKEN,
                                      "dify_base_url": f"http://127.0.0.1:{self.ports['sim']}",
                                      "dify_api_key": DIFY_APP_KEY}]),
            "HITL_REVIEWERS": json.dumps(REVIEWERS),
            "HITL_BOTS": json.dumps([DEMO_BOT]),
            "HITL_INGEST_PORT": str(self.ports["ingest"]),
            "HITL_DECIDER_PORT": str(self.ports["decider"]),
            "HITL_POLLER_PORT": str(self.ports["poller"]),
            "HITL_DISCOVERY_INTERVAL_S": "2",
            "HITL_CONSOLE_SECRET": "demo-console-secret-change-me",
            "HITL_LOG_FORMAT": "json",
            "HITL_DEADLINE_SCAN_INTERVAL_S": "0.2",
            **(env or {}),
        }

    # ------------------------------------------------------------------ addresses
    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['sim']}"

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingest']}"

    @property
    def decider_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['decider']}"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['console']}"

    @property
    def poller_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['poller']}"

    @property
    def notifier_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['notifier']}"

    def url(self, key: str) -> str:
        """Base URL of a process by its key: "ingest", or "ingest-2" for a second replica."""
        return f"http://127.0.0.1:{self.ports[key]}"

    # ------------------------------------------------------------------ processes
    def command(self, name: str) -> list[str]:
        if name == "sim":
            return [sys.executable, "-m", "tests.difysim", "--port", str(self.ports["sim"]), *self.sim_args]
        return [sys.executable, "-m", f"services.{name}"]

    def start(self, name: str, replica: int | None = None) -> str:
        """Start a process (or another replica of it, on its own port); returns its key."""
        key = self.spawn(name, replica)
        self.wait_ready(key)
        return key

    def start_many(self, names: Iterable[str]) -> list[str]:
        """Start several processes at once: every one is spawned before any is waited for, so a stack is
        ready in the time of its slowest process, not the sum of all (each retries what it needs from
        the others: the broker, the store, the simulator)."""
        keys = [self.spawn(name) for name in names]
        for key in keys:
            self.wait_ready(key)
        return keys

    def spawn(self, name: str, replica: int | None = None) -> str:
        key = name if replica is None else f"{name}-{replica}"
        self.ports.setdefault(key, free_port())
        env = dict(self.env)
        if name != "sim":
            env[f"HITL_{name.upper()}_PORT"] = str(self.ports[key])
        with open(self.workdir / f"{key}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            self.procs[key] = subprocess.Popen(self.command(name), cwd=ROOT, env=env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True)
        return key

    def wait_ready(self, key: str) -> None:
        health = "/_sim/health" if key.split("-")[0] == "sim" else "/readyz"
        self.wait_http(self.url(key) + health, key)

    def start_all(self) -> ProcessStack:
        self.start_many(PROCESSES)
        return self

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            proc.send_signal(sig)
            _reap(proc)

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start(name)

    def stop_all(self) -> None:
        """SIGTERM to every process at once (each drains on its own), the simulator after the rest;
        SIGKILL for any still running 30 s later."""
        for group in ([k for k in self.procs if k != "sim"], [k for k in self.procs if k == "sim"]):
            procs = [self.procs.pop(key) for key in group]
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                _reap(proc)

    def wait_http(self, url: str, name: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.workdir / (name + '.log')}:\n"
                                   + self.log_tail(name))
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready at {url} within {timeout_s}s:\n" + self.log_tail(name))

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # ------------------------------------------------------------------ the demo app in the simulator
    def register_app(self, graph_path: Path = DEMO_GRAPH, name: str = "demo-review",
                     api_key: str = DIFY_APP_KEY) -> str:
        graph = graph_path.read_text().replace("__HITL_URL__", self.ingest_url).replace("__HITL_TOKEN__", APP_TOKEN)
        r = httpx.post(f"{self.sim_url}/_sim/apps", json={"name": name, "graph": json.loads(graph), "api_key": api_key})
        r.raise_for_status()
        return r.json()["api_key"]

    def __enter__(self) -> ProcessStack:
        return self.start_all()

    def delete_broker_objects(self) -> None:
        """Remove this stack's exchanges and queues (ephemeral namespaces of tests and `make demo`)."""
        import asyncio

        from shared.broker import Broker
        from shared.topology import Names, build_topology

        async def delete() -> None:
            broker = Broker(self.env["HITL_RABBITMQ_URL"], name="cleanup",
                            # with the notifier's queues: one of the stack's processes may have made them
                            topology=build_topology(Names(self.env["HITL_NAMESPACE"]), with_notifier=True))
            await broker.start(wait_s=10)
            await broker.delete_topology()
            await broker.close()

        asyncio.run(delete())

    def __exit__(self, *exc) -> None:
        self.stop_all()
        self.delete_broker_objects()


def _reap(proc: subprocess.Popen) -> None:
    """Wait for a signalled process to exit; SIGKILL if it is still running 30 s later."""
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def fresh_postgres_db(base_url: str, prefix: str = "hitl_test") -> tuple[str, Callable[[], None]]:
    """A new, empty database on a PostgreSQL server, and a function that drops it (tests, bench)."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base_url.replace("postgresql+psycopg://", "postgresql://").replace("postgres://", "postgresql://"))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False), drop
