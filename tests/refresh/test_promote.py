"""The promote-or-keep rule and the Serve config a promotion writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cemg_ray.refresh.promote import decide, write_serve_config

REPO = Path(__file__).resolve().parents[2]


def test_the_rule_states_the_figures_and_the_margin() -> None:
    kept = decide(0.40, 0.37, "NDCG@10", 0.01, 120)
    assert not kept.promote
    assert kept.reason.startswith("kept the previous version: the refreshed model is worse by 0.0300, more than the "
                                  "margin (NDCG@10 refreshed 0.3700 vs previous 0.4000 on 120 holdout users; margin "
                                  "0.01, so the floor is 0.3900)")
    assert decide(0.40, 0.395, "NDCG@10", 0.01, 120).promote  # worse, but within the margin
    assert decide(0.40, 0.45, "NDCG@10", 0.01, 120).promote
    assert not decide(0.40, 0.45, "NDCG@10", -0.1, 120).promote  # a negative margin demands a gain
    assert not decide(0.0, 0.0, "HR@10", 0.01, 0).promote


def test_the_serve_config_points_the_model_deployment_at_the_new_version(tmp_path: Path) -> None:
    from serve_app.schemas import ServeConfig

    out = tmp_path / "serve.yaml"
    write_serve_config(str(REPO / "serve_app" / "config.yaml"), str(out), "/runs/refresh/v0002")
    conf = yaml.safe_load(out.read_text())
    template = yaml.safe_load((REPO / "serve_app" / "config.yaml").read_text())
    dep = next(d for d in conf["applications"][0]["deployments"] if d["name"] == "ModelReplica")
    assert dep["user_config"]["run_dir"] == "/runs/refresh/v0002"
    ServeConfig.model_validate(dep["user_config"])  # what a replica's reconfigure accepts
    dep["user_config"]["run_dir"] = "runs/demo"
    assert conf == template  # nothing else changed: a redeploy only reconfigures the replicas
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications: []\n")
    with pytest.raises(ValueError, match="no applications.*ModelReplica"):
        write_serve_config(str(bad), str(out), "x")
