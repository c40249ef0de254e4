"""Peak memory of the Ray worker processes a benchmark starts, per stage: what ``bench growth`` puts beside each
stage's wall time (the driver's own peak is in the run manifest, ``cemg_ray/driver_usage.py``).

Why sampled from the process tree: a local cluster's raylet and workers are this process's descendants, so the
sample sees exactly the benchmark's own workers, not another Ray cluster on the same host. The figure is each
worker's private memory (resident minus shared pages): the object store's shared pages, which every worker that
reads an object maps, would otherwise be counted once per reader. It is the largest worker *alive* during a stage:
Ray keeps a finished task's worker process (``ray::IDLE``) for reuse, so a small stage after a large one shows the
earlier worker's memory; read a stage's figure as an upper bound of its own.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import psutil

SAMPLE_EVERY_S = 0.25
WORKER_PREFIX = "ray::"  # Ray names its worker processes ray::<task, actor or IDLE>


def private_bytes(proc: psutil.Process) -> int:
    """Resident memory minus shared pages of one process (0 when it has gone)."""
    try:
        mem = proc.memory_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0
    return max(0, mem.rss - getattr(mem, "shared", 0))


@dataclass
class WorkerMemorySampler:
    """Context manager: the largest Ray worker's private memory in this process's tree, sampled every
    ``SAMPLE_EVERY_S`` as (unix time, bytes, worker name); :meth:`peak_between` reads a stage's window."""

    every_s: float = SAMPLE_EVERY_S
    samples: list[tuple[float, int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __enter__(self) -> WorkerMemorySampler:
        self._thread = threading.Thread(target=self._run, name="worker-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        """Sample at once, then every ``every_s``, and once more when stopped: a run shorter than one interval
        still has its samples."""
        me = psutil.Process(os.getpid())
        while True:
            self._sample(me)
            if self._stop.wait(self.every_s):
                self._sample(me)
                return

    def _sample(self, me: psutil.Process) -> None:
        largest, name = 0, ""
        try:
            procs = me.children(recursive=True)
        except psutil.Error:
            return
        for proc in procs:
            try:
                title = proc.name() if not proc.cmdline() else proc.cmdline()[0]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if title.startswith(WORKER_PREFIX) and (size := private_bytes(proc)) > largest:
                largest, name = size, title
        self.samples.append((time.time(), largest, name))

    def peak_between(self, start: float, end: float) -> tuple[int, str]:
        """(bytes, worker name) of the largest worker sampled in [start, end] (unix seconds); (0, "") if none."""
        inside = [(b, n) for t, b, n in self.samples if start <= t <= end]
        return max(inside, default=(0, ""))


def stage_windows(manifest: dict) -> dict[str, tuple[float, float]]:
    """{stage: (start, end)} in unix seconds from a run manifest's ``finished`` time and ``wall_s``."""
    out = {}
    for name, entry in manifest.get("stages", {}).items():
        if entry.get("status") == "ok" and "finished" in entry and "wall_s" in entry:
            end = datetime.fromisoformat(entry["finished"]).timestamp()
            out[name] = (end - float(entry["wall_s"]), end)
    return out
