"""Network-side fault tools: a TCP proxy that can cut every connection, and a private RabbitMQ node
that can be stopped and started without disturbing anyone else using the machine's broker."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from demo.stack import free_port


class TcpProxy:
    """127.0.0.1:<port> → target. `cut()` drops every connection and refuses new ones until `reopen()`."""

    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="faults-proxy")
        self.thread.start()
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.reopen()

    def _call(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_r, client_w) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        self.connections += 1
        self.writers |= {client_w, up_w}
        try:
            await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w))
        finally:
            self.writers -= {client_w, up_w}

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> int:
        n = len(self.writers)
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.writers):
            transport = w.transport
            transport.abort()  # RST, like a dead link or a killed load balancer
        self.writers.clear()
        return n

    def reopen(self) -> None:
        if self.server is None:
            self._call(self._start())

    def cut(self) -> int:
        return self._call(self._cut())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)


class PrivateRabbit:
    """A RabbitMQ node of our own (same installation, own name/port/data dir), so that restarting the
    broker does not cut the connections of other people's tests on the machine's shared node."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.name = f"hitlfaults{self.port}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="hitl-faults-rmq-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def env(self) -> dict:
        return {**os.environ, "RABBITMQ_NODENAME": self.name, "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
                "RABBITMQ_FEATURE_FLAGS_FILE": str(self.dir / "feature_flags"),
                "RABBITMQ_LOG_BASE": str(self.dir / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "plugins"),
                "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq")}

    def start(self, timeout_s: float = 60) -> None:
        (self.dir / "mnesia").mkdir()
        (self.dir / "log").mkdir()
        (self.dir / "plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n")
        if os.geteuid() == 0:  # rabbitmq-server drops to the rabbitmq user
            shutil.chown(self.dir, "rabbitmq", "rabbitmq")
            for p in self.dir.rglob("*"):
                shutil.chown(p, "rabbitmq", "rabbitmq")
        # the child holds its own copy of the log's descriptor, so ours can close once it is started
        with open(self.dir / "server.out", "wb") as out:
            self.proc = subprocess.Popen(["rabbitmq-server"], env=self.env(), stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.await_startup(timeout_s)

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["rabbitmqctl", "-n", self.name, *args], env=self.env(), capture_output=True,
                              text=True, timeout=timeout)

    def await_startup(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {(self.dir / 'server.out').read_text()[-2000:]}")
            if self.ctl("await_startup", "--timeout", "2", timeout=10).returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"private RabbitMQ node not up within {timeout_s}s")

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.await_startup()

    def stop(self) -> None:
        try:
            self.ctl("stop", timeout=60)
        except Exception:
            pass
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                pass
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
