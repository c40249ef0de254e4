"""What a stage cost the driver process: CPU seconds and peak resident memory while it ran.

Why: on a cluster the driver runs on the head node, which the documented clusters give no task CPUs; a stage that
does its heavy work in the driver instead of on Ray workers shows here (its driver CPU time near its wall time,
its peak memory growing with the catalog), in the run manifest beside each stage's wall time.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass, field
from typing import Any

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
SAMPLE_EVERY_S = 0.05


def rss_bytes() -> int:
    """The process's resident memory now (Linux: /proc/self/statm; elsewhere the lifetime peak, a bound)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE_BYTES
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class DriverUsage:
    """Context manager: CPU seconds of this process (every thread) and its peak resident memory, sampled every
    ``SAMPLE_EVERY_S`` by a daemon thread, between enter and exit."""

    cpu_s: float = 0.0
    peak_rss_bytes: int = 0
    start_rss_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __enter__(self) -> DriverUsage:
        self._cpu0 = time.process_time()
        self.start_rss_bytes = self.peak_rss_bytes = rss_bytes()
        self._thread = threading.Thread(target=self._sample, name="driver-usage", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.peak_rss_bytes = max(self.peak_rss_bytes, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss_bytes())
        self.cpu_s = time.process_time() - self._cpu0

    def as_entry(self) -> dict[str, Any]:
        """The manifest's ``driver`` field of a stage."""
        mib = 1 << 20
        return {"cpu_s": round(self.cpu_s, 3), "peak_rss_mib": round(self.peak_rss_bytes / mib, 1),
                "rss_growth_mib": round((self.peak_rss_bytes - self.start_rss_bytes) / mib, 1)}
