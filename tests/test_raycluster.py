"""A local cluster's workers find their own cluster while another local cluster runs on the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

# The lookup Ray Train's placement-group cleaner makes (State API address from RAY_ADDRESS or the host's clusters),
# from a task on the cluster ensure_ray started, while a second local cluster is up.
PROBE = textwrap.dedent("""
    import json, os, subprocess, sys
    other = subprocess.Popen([sys.executable, "-c",
        "import ray, sys; ray.init(address='local', num_cpus=1, include_dashboard=False); "
        "print('up', flush=True); sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline().strip() == "up"
    try:
        import ray
        from cemg_ray.config import RayConfig
        from cemg_ray.raycluster import ensure_ray

        ensure_ray(RayConfig(num_cpus=1))

        @ray.remote
        def lookup():
            from ray._private import services
            return {"env": os.environ.get("RAY_ADDRESS"), "own": ray.get_runtime_context().gcs_address,
                    "found": services.canonicalize_bootstrap_address_or_die("auto")}

        print(json.dumps(ray.get(lookup.remote())))
        ray.shutdown()
    finally:
        other.stdin.close()
        other.wait(timeout=60)
""")


@pytest.mark.parametrize("ray_address", [None, "local"])
def test_workers_of_a_local_cluster_find_it_beside_another_cluster(tmp_path, ray_address) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if ray_address:
        env["RAY_ADDRESS"] = ray_address  # how the tests give each command a cluster of its own
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["env"] == seen["own"] == seen["found"]
