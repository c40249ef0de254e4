"""Time and fingerprint the synthetic catalog at N items (1.85 users per item) from the revision on PYTHONPATH:

    cd /tmp && PYTHONPATH=/tmp/old /work/main/.venv/bin/python \\
        /work/main/jobs/experiments/synthetic_catalog_probe.py 20000

Prints the module, N, seconds and a hash of the sequences (equal hashes: the same catalog).
"""

from __future__ import annotations

import hashlib
import sys
import time

import cemg_ray.data.synthetic as synthetic
from cemg_ray.config import SyntheticConfig


def main(items: int) -> None:
    t0 = time.perf_counter()
    cat = synthetic.make_catalog(SyntheticConfig(num_items=items, num_users=int(items * 1.85), num_clusters=6))
    sec = time.perf_counter() - t0
    digest = hashlib.sha256(b"".join(s.tobytes() for s in cat.sequences)).hexdigest()[:16]
    print(synthetic.__file__, items, round(sec, 2), digest)


if __name__ == "__main__":
    main(int(sys.argv[1]))
