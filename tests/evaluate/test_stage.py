"""The evaluate stage keeps the committed rows of models it did not re-run, while their models are unchanged."""

import logging
import shutil

from cemg_ray.artifacts import METRICS
from cemg_ray.config import load_config
from cemg_ray.pipeline import run_pipeline
from cemg_ray.store import Store
from tests.conftest import FAST_DEMO, REPO


def _job(run_dir, *overrides):
    return load_config(REPO / "jobs" / "demo.yaml", [f"run_dir={run_dir}", *FAST_DEMO, *overrides])


def test_rerun_keeps_other_rows_and_drops_retrained_ones(demo_run, tmp_path, caplog):
    _, demo_store = demo_run
    run_dir = tmp_path / "run"
    shutil.copytree(demo_store.root_uri, run_dir)
    store = Store(str(run_dir))

    run_pipeline(_job(run_dir, "evaluate.models=[popularity,sasrec,cemg:cold_share]"), ["evaluate"])
    first = store.read_json(METRICS)
    # the demo's other rows (cemg:cold_share, cemg:dense: same models, not re-run) are kept as well
    assert {"popularity", "sasrec", "cemg", "cemg:cold_share"} <= set(first)

    # one model again with a changed decoding setting: the other rows stay, the re-run one is updated
    run_pipeline(_job(run_dir, "evaluate.models=[cemg:cold_share]", "decode.policies.cold_share.share=0.6"),
                 ["evaluate"])
    second = store.read_json(METRICS)
    assert set(second) == set(first)
    assert all(second[name] == first[name] for name in first if name != "cemg:cold_share")
    assert second["cemg:cold_share"]["overall"]["HR@10"] < first["cemg:cold_share"]["overall"]["HR@10"]
    assert "sasrec" in store.read_text("eval/report.md")

    # SASRec retrained: its old row no longer describes the model in the run directory
    run_pipeline(_job(run_dir, "sasrec.seed=7", "evaluate.models=[popularity]"), ["sasrec"])
    with caplog.at_level(logging.WARNING, logger="cemg_ray"):
        manifest = run_pipeline(_job(run_dir, "sasrec.seed=7", "evaluate.models=[popularity]"), ["evaluate"])
    third = store.read_json(METRICS)
    assert set(third) == set(first) - {"sasrec"}
    assert manifest["stages"]["evaluate"]["report"]["dropped_rows"] == ["sasrec"]
    assert any("dropping the earlier row of sasrec" in r.getMessage() for r in caplog.records)


def test_default_list_is_chosen_on_validation_and_used_when_no_model_is_named(demo_run, tmp_path):
    from cemg_ray.api import open_run
    from cemg_ray.artifacts import DEFAULT_MODEL
    from cemg_ray.data.split import load_split
    from cemg_ray.evaluate.harness import evaluate
    from cemg_ray.recommenders import default_model, load

    _, demo_store = demo_run
    run_dir = tmp_path / "run"
    shutil.copytree(demo_store.root_uri, run_dir)
    store = Store(str(run_dir))
    assert default_model(store) in {"cemg", "cemg:cold_share", "cemg:dense"}  # the demo job chose among these
    store.delete(DEFAULT_MODEL)
    assert default_model(store) == "cemg"  # nothing chosen: the fallback
    cfg = _job(run_dir, "evaluate.models=[popularity]", "evaluate.select_default=[cemg,cemg:cold_share,sasrec]")
    run_pipeline(cfg, ["evaluate"])
    choice = store.read_json(DEFAULT_MODEL)
    assert choice["selected_on"] == "valid" and set(choice["valid"]) == {"cemg", "cemg:cold_share", "sasrec"}
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    for name, row in choice["valid"].items():  # the validation split's figures, never the test split's
        again = evaluate(load(name, cfg, store), split, "valid", [10])["overall"]
        assert row["NDCG@10"] == again["NDCG@10"]
    best = max(choice["valid"], key=lambda n: choice["valid"][n]["NDCG@10"])
    assert choice["model"] == best == default_model(store)
    assert open_run(run_dir).model == best
    assert open_run(run_dir, model="popularity").model == "popularity"


def test_rows_and_choices_written_under_the_old_model_names_are_read_as_policies(demo_run, tmp_path, caplog):
    """A run evaluated when policies were models (``cemg_cold``, ``cemg_dense``): its default list still opens,
    as the policy it was, and its old rows are carried over under the new names where the version still holds."""
    from cemg_ray.api import open_run
    from cemg_ray.artifacts import DEFAULT_MODEL
    from cemg_ray.recommenders import default_model

    _, demo_store = demo_run
    run_dir = tmp_path / "run"
    shutil.copytree(demo_store.root_uri, run_dir)
    store = Store(str(run_dir))
    rows = store.read_json(METRICS)
    old = {("cemg_dense" if name == "cemg:dense" else name): row for name, row in rows.items()}
    store.write_json(METRICS, old)
    store.write_json(DEFAULT_MODEL, {"model": "cemg_dense", "selected_on": "valid"})
    assert default_model(store) == "cemg:dense"
    run = open_run(run_dir)
    assert run.model == "cemg:dense" and run.recommender.policy.kind == "dense"
    run_pipeline(_job(run_dir, "evaluate.models=[popularity]"), ["evaluate"])
    assert "cemg:dense" in store.read_json(METRICS) and "cemg_dense" not in store.read_json(METRICS)
