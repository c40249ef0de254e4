"""The driver's CPU seconds and peak memory per stage: measured, not guessed."""

from __future__ import annotations

import time

import numpy as np

from cemg_ray.driver_usage import DriverUsage, rss_bytes


def test_peak_memory_sees_an_allocation_freed_before_the_end_and_cpu_time_counts_work_not_sleep() -> None:
    with DriverUsage() as usage:
        block = np.ones(200 << 20, dtype=np.uint8)  # 200 MiB, touched
        time.sleep(0.3)  # several samples while it is held
        del block
        time.sleep(0.2)
    assert usage.as_entry()["rss_growth_mib"] >= 150
    assert usage.peak_rss_bytes - rss_bytes() >= 150 << 20  # freed: the peak is not the end state
    with DriverUsage() as idle:
        time.sleep(0.3)
    with DriverUsage() as busy:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.3:
            sum(range(1000))
    assert idle.cpu_s < 0.15 and busy.cpu_s > idle.cpu_s
