"""End-to-end helpers: the real processes (demo.stack), runs started in the Dify simulator, decisions
taken with the real `hitl` CLI."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from demo.stack import DEMO_GRAPH, DIFY_APP_KEY, ROOT, ProcessStack


class E2E:
    def __init__(self, stack: ProcessStack) -> None:
        self.stack = stack
        self.pool = ThreadPoolExecutor(max_workers=16)

    def register(self, graph_edit=None, name: str = "demo-review", key: str = DIFY_APP_KEY) -> str:
        graph = json.loads(DEMO_GRAPH.read_text())
        if graph_edit:
            graph_edit(graph)
        path = self.stack.workdir / f"{name}.graph.json"
        path.write_text(json.dumps(graph))
        return self.stack.register_app(path, name=name, api_key=key)

    def start_run(self, topic: str = "release notes", key: str = DIFY_APP_KEY) -> Future:
        """A blocking run in a thread: the future's result is Dify's answer when the run ends."""
        def run() -> dict[str, Any]:
            r = httpx.post(f"{self.stack.sim_url}/v1/workflows/run", headers={"Authorization": f"Bearer {key}"},
                           json={"inputs": {"topic": topic}, "response_mode": "blocking", "user": "e2e"}, timeout=600)
            return r.json()
        return self.pool.submit(run)

    def open_checkpoints(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.stack.ingest_url}/v1/checkpoints?status=open&limit=500",
                      headers={"Authorization": "Bearer rv-alice-token"}, timeout=10)
        return r.json()["checkpoints"]

    def wait_open(self, *, round_: int = 1, count: int = 1, exclude: set[str] = frozenset(),
                  timeout_s: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                found = [c for c in self.open_checkpoints() if c["round"] == round_ and c["id"] not in exclude]
            except httpx.HTTPError:
                found = []
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"fewer than {count} open round-{round_} checkpoints after {timeout_s}s")

    def hitl(self, *args: str, reviewer_token: str = "rv-alice-token") -> subprocess.CompletedProcess:
        env = {**self.stack.env, "HITL_API_URL": self.stack.ingest_url, "HITL_TOKEN": reviewer_token, "NO_COLOR": "1"}
        return subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=env, capture_output=True,
                              text=True, cwd=ROOT, timeout=60)

    def decide(self, checkpoint_id: str, *args: str) -> str:
        out = self.hitl("decide", checkpoint_id, *args)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def get_run(self, run_id: str, key: str = DIFY_APP_KEY) -> dict[str, Any]:
        return httpx.get(f"{self.stack.sim_url}/v1/workflows/run/{run_id}",
                         headers={"Authorization": f"Bearer {key}"}).json()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30, what: str = "", period_s: float = 0.1) -> Any:
    """What `predicate()` returns once it is truthy, looking every `period_s`; after `timeout_s`, an
    AssertionError that says what was awaited and the last answer."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(period_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {str(last)[:500]}")


def wait_run(stack: ProcessStack, run_id: str, predicate: Callable[[dict[str, Any]], bool],
             timeout_s: float = 40) -> dict[str, Any]:
    """The run as ingest records it (GET /v1/runs/{id}, alice's view), once `predicate` holds for it."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        r = httpx.get(f"{stack.ingest_url}/v1/runs/{run_id}", headers={"Authorization": "Bearer rv-alice-token"},
                      timeout=10)
        if r.status_code == 200:
            last = r.json()
            if predicate(last):
                return last
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never matched; last seen: {json.dumps(last)[:800]}")


def final_run(stack: ProcessStack, run_id: str, timeout_s: float = 30, key: str = DIFY_APP_KEY) -> dict[str, Any]:
    """The run as Dify (the simulator) has it, once it has left `paused` and `running`."""
    deadline, run = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        run = httpx.get(f"{stack.sim_url}/v1/workflows/run/{run_id}", headers={"Authorization": f"Bearer {key}"},
                        timeout=10).json()
        if run.get("status") not in ("paused", "running"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never finished in Dify: {json.dumps(run)[:400]}")


def ok_endpoint(wait: Callable[[], object]) -> ThreadingHTTPServer:
    """A local HTTP endpoint, already serving, whose GETs answer `{"ok":true}` once `wait()` returns: a run's
    HTTP node runs for as long as the test wants. Its URL: f"http://127.0.0.1:{server.server_address[1]}/…";
    `shutdown()` it after."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            wait()
            body = b'{"ok":true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def node(graph: dict, node_id: str) -> dict:
    return next(n for n in graph["nodes"] if n["id"] == node_id)


def set_checkpoint_body(graph: dict, **changes: Any) -> None:
    """Change top-level values of the checkpoint node's JSON body template (numbers/strings only)."""
    item = node(graph, "checkpoint")["data"]["body"]["data"][0]
    text = item["value"]
    for key, value in changes.items():
        rendered = json.dumps(value)
        pattern = rf'"{key}": ("[^"]*"|[0-9.]+)'
        text = re.sub(pattern, f'"{key}": {rendered}', text) if re.search(pattern, text) else \
            text[:-1] + f', "{key}": {rendered}}}'
    item["value"] = text


def logs(stack: ProcessStack) -> str:
    return "\n".join(p.read_text(errors="replace") for p in Path(stack.workdir).glob("*.log"))
