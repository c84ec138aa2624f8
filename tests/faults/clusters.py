"""Private clusters on this machine for the fault suite: three RabbitMQ nodes joined into one cluster,
and a PostgreSQL primary with a streaming standby. Their own names, ports and data directories: the
machine's shared RabbitMQ and PostgreSQL (and whoever tests against them) are never touched.

Every node runs under the installation's service user (RabbitMQ's wrapper drops to `rabbitmq`, whose
`.erlang.cookie` all nodes share; PostgreSQL refuses root, so `runuser -u postgres`)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from demo.stack import free_port
from tests.faults.netfaults import PrivateRabbit


# ---------------------------------------------------------------------- RabbitMQ
class RabbitNode(PrivateRabbit):
    """One node of a private cluster: started, killed with SIGKILL, started again on its data."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.name = f"{prefix}{self.port}@localhost"
        self.beam_pid: int | None = None

    def prepare(self) -> None:
        (self.dir / "mnesia").mkdir()
        (self.dir / "log").mkdir()
        (self.dir / "plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
            # a node that comes back after kill -9 must not wait minutes for peers that are gone too
            "mnesia_table_loading_retry_limit = 3\nmnesia_table_loading_retry_timeout = 10000\n")
        if os.geteuid() == 0:  # rabbitmq-server drops to the rabbitmq user
            for p in [self.dir, *self.dir.rglob("*")]:
                shutil.chown(p, "rabbitmq", "rabbitmq")

    def launch(self) -> None:
        with open(self.dir / "server.out", "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(["rabbitmq-server"], env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def await_startup(self, timeout_s: float = 60) -> None:
        """As PrivateRabbit's, but a CLI call that is slow on a loaded machine is "not yet", not a failure."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {(self.dir / 'server.out').read_text()[-2000:]}")
            try:
                if self.ctl("await_startup", "--timeout", "5", timeout=30).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"RabbitMQ node {self.name} not up within {timeout_s}s")

    def remember_pid(self) -> None:
        out = self.ctl("eval", "list_to_integer(os:getpid()).", timeout=20)
        self.beam_pid = int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip().isdigit() else None

    def kill9(self) -> None:
        """SIGKILL to the Erlang VM and everything the node started: a crash, no goodbye to its peers."""
        if self.beam_pid:
            try:
                os.kill(self.beam_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self.beam_pid = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RabbitCluster:
    """`size` nodes joined to the first (`rabbitmqctl join_cluster`). `urls` is what the product is given."""

    def __init__(self, size: int = 3, prefix: str = "hitlc") -> None:
        self.nodes = [RabbitNode(f"{prefix}{i}-") for i in range(size)]

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def start(self, timeout_s: float = 120) -> None:
        for node in self.nodes:
            node.prepare()
            node.launch()
        for node in self.nodes:
            node.await_startup(timeout_s)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            for args in (("stop_app",), ("join_cluster", first.name), ("start_app",)):
                out = node.ctl(*args, timeout=120)
                if out.returncode != 0:
                    raise RuntimeError(f"{node.name} {' '.join(args)}: {out.stdout[-500:]} {out.stderr[-500:]}")
            node.await_startup(timeout_s)
        for node in self.nodes:
            node.remember_pid()
        running = self.running_nodes()
        if running != {n.name for n in self.nodes}:
            raise RuntimeError(f"cluster formed with {running} only")

    def any_alive(self) -> RabbitNode:
        return next(n for n in self.nodes if n.alive())

    def _ctl_json(self, *args: str):
        """A CLI query of a live node, parsed; None when it fails or is too slow (a loaded machine)."""
        try:
            out = self.any_alive().ctl(*args, "--formatter", "json", timeout=60)
        except subprocess.TimeoutExpired:
            return None
        return json.loads(out.stdout or "null") if out.returncode == 0 else None

    def running_nodes(self) -> set[str]:
        status = self._ctl_json("cluster_status")
        return set(status["running_nodes"]) if status else set()

    def leader_of(self, queue: str) -> RabbitNode | None:
        """The node leading `queue` now (quorum queues: the Raft leader)."""
        listed = self._ctl_json("list_queues", "-q", "name", "leader") or []
        leaders = {q["name"]: q.get("leader") for q in listed}
        return next((n for n in self.nodes if n.name == leaders.get(queue)), None)

    def restart(self, node: RabbitNode, timeout_s: float = 180) -> None:
        node.launch()
        node.await_startup(timeout_s)
        node.remember_pid()

    def stop(self, keep_logs_in: Path | None = None) -> None:
        for node in self.nodes:
            node.kill9()
            if keep_logs_in is not None and (node.dir / "log").exists():
                shutil.copytree(node.dir / "log", keep_logs_in / f"rabbitmq-{node.name}", dirs_exist_ok=True)
            shutil.rmtree(node.dir, ignore_errors=True)


# ---------------------------------------------------------------------- PostgreSQL
def pg_bin() -> Path | None:
    """The newest PostgreSQL server binaries installed (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgServer:
    """One PostgreSQL server in a temp dir on a free port, trust auth on 127.0.0.1 (replication too)."""

    def __init__(self, bin_dir: Path, data: Path, port: int | None = None) -> None:
        self.bin = bin_dir
        self.data = data
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = list(cmd)
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/tmp")
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {out.stdout[-800:]} {out.stderr[-800:]}")
        return out

    def initdb(self) -> None:
        self.run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("listen_addresses = '127.0.0.1'\nfsync = on\nwal_level = replica\nmax_wal_senders = 5\n"
                       "hot_standby = on\nmax_connections = 200\nshared_buffers = 32MB\nwal_keep_size = 256MB\n")
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write("host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n")

    def launch(self) -> None:
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.data)]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        with open(self.data.parent / f"{self.data.name}.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres on {self.port} exited: {self.log_tail()}")
            probe = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True, timeout=10)
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"postgres on {self.port} not ready within {timeout_s}s: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.data.parent / f"{self.data.name}.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self.run(str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d",
                        database, "-Atc", statement, timeout=60).stdout.strip()

    def kill9(self) -> None:
        """SIGKILL to the postmaster and every backend: the machine died, nothing was flushed politely."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: open transactions are rolled back, every connection is closed."""
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=120)
        if self.proc is not None:
            self.proc.wait(timeout=30)
        self.launch()
        self.wait_ready()


def pg_root() -> Path:
    """A temp dir the postgres user may write in (pytest's own tmp dirs are root's, mode 0700)."""
    root = Path(tempfile.mkdtemp(prefix="hitl-faults-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    return root


class PgSingle:
    """One private server, to be restarted."""

    def __init__(self) -> None:
        bin_dir = pg_bin()
        if bin_dir is None:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb) on this machine")
        self.root = pg_root()
        self.server = PgServer(bin_dir, self.root / "data")

    def start(self, database: str = "hitl") -> None:
        self.server.initdb()
        self.server.launch()
        self.server.wait_ready()
        self.server.sql(f'CREATE DATABASE "{database}"')

    def url(self, database: str = "hitl") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.server.port}/{database}"

    def stop(self) -> None:
        self.server.kill9()
        shutil.rmtree(self.root, ignore_errors=True)


class PgPair:
    """A primary and a streaming standby (`pg_basebackup -R`), replication synchronous: a commit the
    primary acknowledged is on the standby too, so promoting it loses no acknowledged transaction.
    Asynchronous replication would: the last commits before the crash may never reach the standby."""

    def __init__(self, synchronous: bool = True) -> None:
        bin_dir = pg_bin()
        if bin_dir is None:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb) on this machine")
        self.root = pg_root()
        self.primary = PgServer(bin_dir, self.root / "primary")
        self.standby = PgServer(bin_dir, self.root / "standby")
        self.synchronous = synchronous

    def start(self, database: str = "hitl") -> None:
        self.primary.initdb()
        self.primary.launch()
        self.primary.wait_ready()
        self.primary.sql(f'CREATE DATABASE "{database}"')
        self.primary.run(str(self.primary.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port),
                         "-U", "postgres", "-D", str(self.standby.data), "-R", "-X", "stream",
                         "--checkpoint=fast", "--no-sync")
        with (self.standby.data / "postgresql.auto.conf").open("a") as conf:
            conf.write("cluster_name = 'standby'\n")  # the name its WAL receiver gives the primary
        self.standby.launch()
        self.standby.wait_ready()
        if self.synchronous:  # only on the primary: the standby, once promoted, commits on its own
            self.primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
            self.primary.sql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 60
        want = "sync" if self.synchronous else "async"
        while self.primary.sql("SELECT sync_state FROM pg_stat_replication") != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby is not streaming ({want}): {self.standby.log_tail()}")
            time.sleep(0.2)

    def url(self, database: str = "hitl") -> str:
        return (f"postgresql://postgres@127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}/{database}"
                "?target_session_attrs=read-write")

    def promote(self) -> None:
        self.standby.run(str(self.standby.bin / "pg_ctl"), "-D", str(self.standby.data), "-w", "promote")

    def stop(self) -> None:
        for server in (self.primary, self.standby):
            server.kill9()
        shutil.rmtree(self.root, ignore_errors=True)
