"""py-spy on ingest and decider while the throughput scenario runs (`python -m bench --profile`).

Writes collapsed stacks (bench/results/profile-<label>-<process>.txt, loadable by speedscope or
flamegraph.pl) and keeps a summary in the JSON: the functions with the most samples on top of the
stack (self) and in the stack (total), and the share per package.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else None


def summarize_collapsed(text: str, top: int = 25) -> dict[str, Any]:
    """Summary of py-spy's raw (collapsed) output: `frame;frame;frame count` per line."""
    self_c: Counter = Counter()
    total_c: Counter = Counter()
    pkg_c: Counter = Counter()
    samples = 0
    idle = 0
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = [f for f in stack.split(";") if f]
        samples += count
        if not frames:
            continue
        leaf = frames[-1]
        if any(w in leaf for w in ("select (selectors.py", "run_once (uvloop", "_worker (concurrent",
                                   "wait (threading.py", "poll (", "epoll", "_run_once (asyncio", "get (queue.py")):
            idle += count
        self_c[_short(leaf)] += count
        for f in set(_short(x) for x in frames):
            total_c[f] += count
        pkg_c[_package(leaf)] += count
    pct = lambda c: round(100 * c / samples, 1) if samples else 0.0  # noqa: E731
    return {"samples": samples, "idle_pct": pct(idle),
            "self": [(f, pct(c)) for f, c in self_c.most_common(top)],
            "total": [(f, pct(c)) for f, c in total_c.most_common(top)],
            "by_package": [(p, pct(c)) for p, c in pkg_c.most_common(15)]}


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"; line numbers split one function into many
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = path.split("/")
    tail = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({tail})"


def _package(frame: str) -> str:
    _, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    for mine in ("services/", "shared/", "bench/"):
        if f"/{mine}" in path or path.startswith(mine):
            return mine.rstrip("/") + "/" + path.split(mine, 1)[1].split("/", 1)[0]
    if "/lib/python3" in path:
        return "stdlib:" + path.rsplit("/", 1)[-1]
    return path or "?"


class Profiler:
    """Records ingest and decider (every replica) for `duration_s`, starting after `delay_s`."""

    def __init__(self, out_dir: Path, label: str, rate_hz: int = 97) -> None:
        self.out_dir, self.label, self.rate_hz = Path(out_dir), label, rate_hz
        self.procs: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self, stack, duration_s: float, delay_s: float = 2.0) -> None:
        exe = py_spy()
        if exe is None:
            self.error = "py-spy not installed (.venv/bin/pip install py-spy)"
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        targets = {k: stack.pid(k) for k in stack.ingest_keys[:1] + stack.decider_keys[:1]}

        def run() -> None:
            time.sleep(delay_s)
            for key, pid in targets.items():
                path = self.out_dir / f"profile-{self.label}-{key}.txt"
                cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(duration_s)), "--rate",
                       str(self.rate_hz), "--format", "raw", "--output", str(path), "--nonblocking", "--gil"]
                self.procs[key] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), path)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def collect(self) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        if self._thread:
            self._thread.join(timeout=30)
        out: dict[str, Any] = {}
        for key, (proc, path) in self.procs.items():
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out[key] = {"error": "py-spy did not finish"}
                continue
            if not path.exists():
                out[key] = {"error": (err or b"").decode(errors="replace")[-500:]}
                continue
            out[key] = {"file": str(path), **summarize_collapsed(path.read_text(errors="replace"))}
        return out
