"""Cluster specs and job files: they parse, their entrypoints and import paths exist, the serve configs agree."""

from __future__ import annotations

import re
import shlex
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from cemg_ray.config import load_config
from cemg_ray.pipeline import resolve_stages
from cemg_ray.stages import STAGES
from serve_app.config_check import check_serve_config

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "cluster" / "kuberay"
SPECS = sorted((REPO / "cluster").rglob("*.yaml")) + [REPO / "serve_app" / "config.yaml"]
RAY_VERSION = metadata.version("ray")
IMAGE = "ghcr.io/cemg-ray/cemg-ray:0.1.0"  # built from cluster/Dockerfile


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def containers(cluster_spec: dict) -> list[dict]:
    groups = [cluster_spec["headGroupSpec"], *cluster_spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def image_path(path: str) -> Path:
    """A path inside the image (the repository is copied to /app) as a path in this checkout."""
    assert path.startswith("/app/"), path
    return REPO / path.removeprefix("/app/")


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(REPO)))
def test_specs_parse_and_hold_no_credentials(path: Path) -> None:
    text = path.read_text()
    assert isinstance(yaml.safe_load(text), dict)
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|RAY_AUTH_TOKEN\s*[:=]\s*\S", text, re.I)


def test_serve_config_is_deployable_and_typo_free() -> None:
    conf = load(REPO / "serve_app" / "config.yaml")
    assert check_serve_config(conf) == []
    assert [d["name"] for d in conf["applications"][0]["deployments"]] == ["ModelReplica", "Ingress"]


def test_config_check_catches_what_ray_serve_ignores() -> None:
    conf = load(REPO / "serve_app" / "config.yaml")
    dep = conf["applications"][0]["deployments"][0]
    dep["autoscaling_config"]["max_replica"] = 4
    dep["user_config"]["modle"] = "cemg"
    conf["applications"][0]["import_path"] = "serve_app.app:nothing"
    problems = "\n".join(check_serve_config(conf))
    assert "autoscaling_config.max_replica: unknown key" in problems
    assert "user_config: modle: unknown key" in problems
    assert "has no attribute 'nothing'" in problems


def test_config_check_reads_rayservice_manifests_and_names_a_missing_embedded_config(tmp_path, capsys) -> None:
    from serve_app.config_check import main

    assert main([str(REPO / "cluster" / "kuberay" / "rayservice.yaml")]) == 0
    broken = tmp_path / "rayservice.yaml"
    broken.write_text(yaml.safe_dump({"kind": "RayService", "spec": {"rayClusterConfig": {}}}))
    assert main([str(broken)]) == 1
    assert f"{broken}: spec.serveConfigV2: missing or not a YAML string" in capsys.readouterr().out


def test_rayservice_embeds_the_serve_config() -> None:
    service = load(KUBERAY / "rayservice.yaml")
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    local = load(REPO / "serve_app" / "config.yaml")
    assert check_serve_config(embedded) == []
    assert embedded["applications"][0]["deployments"][0]["user_config"]["run_dir"].startswith("s3://")
    for conf in (embedded, local):
        for dep in conf["applications"][0]["deployments"]:
            dep.get("user_config", {}).pop("run_dir", None)  # the one intended difference: a local run vs the run in S3
    assert embedded == local


@pytest.mark.parametrize("name, path", [("RayCluster", ["spec"]), ("RayJob", ["spec", "rayClusterSpec"]),
                                        ("RayService", ["spec", "rayClusterConfig"])])
def test_kuberay_clusters_have_token_auth_same_ray_and_image(name: str, path: list[str]) -> None:
    doc = next(load(p) for p in KUBERAY.glob("*.yaml") if load(p)["kind"] == name)
    assert doc["apiVersion"] == "ray.io/v1"
    spec = doc
    for key in path:
        spec = spec[key]
    assert spec["authOptions"] == {"mode": "token", "secretName": "cemg-ray-auth"}
    assert spec["rayVersion"] == RAY_VERSION
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # a CPU head that runs no tasks
    assert {c["image"] for c in containers(spec)} == {IMAGE}
    assert spec["enableInTreeAutoscaling"] is True
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_raycluster_has_autoscaling_gpu_workers() -> None:
    spec = load(KUBERAY / "raycluster.yaml")["spec"]
    gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")
    assert gpu["maxReplicas"] > gpu["minReplicas"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"


def test_rayjob_entrypoint_runs_a_valid_job_from_the_image() -> None:
    job = load(KUBERAY / "rayjob-train.yaml")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["cemg-ray", "run"]
    job_file = image_path(argv[2])
    cfg = load_config(job_file)
    stages = argv[argv.index("--stages") + 1].split(",")
    assert resolve_stages(cfg, stages) == stages and "train" in stages
    assert cfg.run_dir.startswith("s3://") and cfg.train.use_gpu
    gpu = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["DS_ACCELERATOR"] == "cuda"


def test_dockerfile_builds_from_this_ray_and_copies_what_the_specs_use() -> None:
    text = (REPO / "cluster" / "Dockerfile").read_text()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(RAY_VERSION)}-py311", text, re.M)
    copied = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", text, re.M)
    for sources in copied:
        for src in sources.split():
            assert (REPO / src).exists(), src
    assert {"cemg_ray", "serve_app", "jobs"} <= {s for c in copied for s in c.split()}


def test_cluster_launcher_has_cpu_head_gpu_workers_and_token_auth() -> None:
    conf = load(REPO / "cluster" / "aws.yaml")
    types = conf["available_node_types"]
    assert conf["provider"]["type"] == "aws" and conf["head_node_type"] == "head"
    assert types["head"]["resources"] == {"CPU": 0}
    gpu = types["gpu_worker"]
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p")) and gpu["max_workers"] > gpu["min_workers"]
    assert conf["docker"]["image"] == f"rayproject/ray:{RAY_VERSION}-py311-gpu"
    assert "--env RAY_AUTH_MODE=token" in conf["docker"]["run_options"]
    starts = conf["head_start_ray_commands"] + conf["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert "~/.ray/auth_token" in conf["file_mounts"]
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())  # S3 by role, not keys


JOBS = sorted((REPO / "jobs").glob("*.yaml"))


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_every_job_validates(path: Path) -> None:
    assert resolve_stages(load_config(path), None)


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_job_per_stage_runs_just_that_stage_of_the_pipeline(stage: str) -> None:
    path = REPO / "jobs" / f"{stage}.yaml"
    assert load(path) == {"extends": "pipeline.yaml", "stages": [stage]}
    assert f"cemg-ray run jobs/{stage}.yaml" in path.read_text()
    cfg, whole = load_config(path), load_config(REPO / "jobs" / "pipeline.yaml")
    assert resolve_stages(cfg, None) == [stage]
    assert cfg.model_dump(exclude={"stages"}) == whole.model_dump(exclude={"stages"})


def test_operations_doc_names_only_files_that_exist() -> None:
    doc = (REPO / "docs" / "OPERATIONS.md").read_text()
    file_ref = r"(?<![\w/])((?:jobs|cluster|serve_app)/[\w./-]+\.(?:yaml|py|md)|cluster/Dockerfile)\b"
    named = set(re.findall(file_ref, doc))
    assert named, "OPERATIONS.md names no files"
    assert [n for n in sorted(named) if not (REPO / n).exists() and "<" not in n] == []
