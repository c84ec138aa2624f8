"""The naive peer, in the seed's style: a synchronous endpoint with one thread per held call that
polls the database every 100 ms for the decision; a reviewer loop writes decisions into the same
kind of database. Standard library (ThreadingHTTPServer) + sqlite3 / psycopg, nothing else.

python -m bench.naive --port P --db URL [--token T] [--poll 0.1]
"""
from __future__ import annotations

import argparse
import json
import queue
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCHEMA = ("CREATE TABLE IF NOT EXISTS naive_checkpoints (id VARCHAR(36) PRIMARY KEY, run_id VARCHAR(64) UNIQUE, "
          "status VARCHAR(16) NOT NULL, action VARCHAR(16), node_output TEXT, created_at DOUBLE PRECISION, "
          "decided_at DOUBLE PRECISION)")


class Pool:
    """A few connections shared by all threads (SQLite file in WAL mode, or PostgreSQL)."""

    def __init__(self, url: str, size: int = 16) -> None:
        self.url, self.sqlite = url, url.startswith("sqlite")
        self.free: queue.Queue = queue.Queue()
        self.param = "?" if self.sqlite else "%s"
        for _ in range(size):
            self.free.put(self._connect())

    def _connect(self):
        if self.sqlite:
            import sqlite3

            conn = sqlite3.connect(self.url.split("///", 1)[1], timeout=30, check_same_thread=False,
                                   isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn
        import psycopg

        return psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)

    @contextmanager
    def conn(self):
        c = self.free.get(timeout=60)
        try:
            yield c
        finally:
            self.free.put(c)

    def q(self, sql: str) -> str:
        return sql.replace("?", self.param)

    def execute(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.conn() as c:
            cur = c.execute(self.q(sql), args)
            try:
                return list(cur.fetchall()) if cur.description else []
            finally:
                cur.close()


def make_handler(pool: Pool, token: str, poll_s: float):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, data: dict) -> None:
            body = json.dumps(data, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(200, {"status": "ok"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.headers.get("Authorization") != f"Bearer {token}":
                return self._send(401, {"error": "unauthorized"})
            try:
                body = json.loads(raw)
                run_id = str(body["workflow_run_id"])
            except (ValueError, KeyError):
                return self._send(400, {"error": "invalid"})
            window = max(1.0, float(body.get("read_timeout_s") or 60) - 5)
            new_id = str(uuid.uuid4())
            pool.execute("INSERT INTO naive_checkpoints (id, run_id, status, node_output, created_at) "
                         "VALUES (?, ?, 'open', ?, ?) ON CONFLICT (run_id) DO NOTHING",
                         (new_id, run_id, json.dumps(body.get("node_output")), time.time()))
            cp_id = pool.execute("SELECT id FROM naive_checkpoints WHERE run_id = ?", (run_id,))[0][0]
            deadline = time.monotonic() + window
            while time.monotonic() < deadline:  # the seed's loop: sleep, look, repeat
                time.sleep(poll_s)
                row = pool.execute("SELECT status, action FROM naive_checkpoints WHERE id = ?", (cp_id,))
                if row and row[0][0] != "open":
                    return self._send(200, {"action": row[0][1], "checkpoint_id": cp_id, "round": 1,
                                            "output": body.get("node_output"), "feedback": None,
                                            "decided_by": "naive-bot", "reason": "decision"})
            self._send(503, {"error": {"code": "decision_pending"}})

    return Handler


def serve(port: int, db: str, token: str, poll_s: float) -> None:
    pool = Pool(db)
    pool.execute(SCHEMA)
    ThreadingHTTPServer.request_queue_size = 4096
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(pool, token, poll_s))
    server.daemon_threads = True
    server.serve_forever(poll_interval=0.5)


class NaiveReviewer:
    """The reviewer loop of the naive peer: every `every_s` it reads the open rows and (when told to)
    writes a decision into each. Runs in a thread; `decided_at` uses time.monotonic()."""

    def __init__(self, db: str, every_s: float = 0.01) -> None:
        self.pool = Pool(db, size=1)
        self.pool.execute(SCHEMA)
        self.every_s = every_s
        self.auto = True
        self.prefixes: set[str] = set()
        self.opened: dict[str, str] = {}
        self.decided_at: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> NaiveReviewer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        while not self.stop.is_set():
            rows = self.pool.execute("SELECT run_id, id FROM naive_checkpoints WHERE status = 'open' LIMIT 5000")
            todo = []
            for run_id, cp_id in rows:
                self.opened.setdefault(run_id, cp_id)
                if self.auto or any(run_id.startswith(p) for p in tuple(self.prefixes)):
                    todo.append((run_id, cp_id))
            if todo:
                t = time.monotonic()
                with self.pool.conn() as c:
                    if self.pool.sqlite:
                        c.execute("BEGIN IMMEDIATE")
                    else:
                        c.execute("BEGIN")
                    for _run_id, cp_id in todo:
                        c.execute(self.pool.q("UPDATE naive_checkpoints SET status = 'resolved', action = 'approve', "
                                              "decided_at = ? WHERE id = ? AND status = 'open'"), (time.time(), cp_id))
                    c.execute("COMMIT")
                for run_id, _ in todo:
                    self.decided_at.setdefault(run_id, t)
            self.stop.wait(self.every_s)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--token", default="cp-demo-token-change-me")
    p.add_argument("--poll", type=float, default=0.1)
    a = p.parse_args()
    serve(a.port, a.db, a.token, a.poll)
