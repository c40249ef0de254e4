import pytest

from cemg_ray.config import load_config
from cemg_ray.pipeline import is_done, resolve_stages, run_pipeline, stage_hash
from cemg_ray.store import Store

FOUNDATION = ["data", "popularity", "evaluate"]


def test_runs_in_order_writes_manifest_and_skips_done_stages(small_job):
    m1 = run_pipeline(small_job, ["evaluate", "data", "popularity"])
    assert list(m1["stages"]) == FOUNDATION
    assert all(s["status"] == "ok" for s in m1["stages"].values())
    store = Store(small_job.run_dir)
    manifest = store.read_json("manifest.json")
    assert manifest["config"]["run_dir"] == small_job.run_dir
    assert manifest["versions"]["ray"] and "python" in manifest["versions"]
    assert manifest["stages"]["data"]["wall_s"] >= 0
    m2 = run_pipeline(small_job, FOUNDATION)
    assert [s["status"] for s in m2["stages"].values()] == ["skipped"] * 3
    # a skipped stage keeps the record of the run that made its outputs: wall time, report, its config
    for name in FOUNDATION:
        assert m2["stages"][name]["wall_s"] == m1["stages"][name]["wall_s"]
        assert m2["stages"][name]["report"] == m1["stages"][name]["report"]
        assert m2["stages"][name]["wall_s_now"] == 0.0
    assert m1["stages"]["data"]["config"]["dataset"]["synthetic"] == small_job.dataset.synthetic.model_dump()
    assert set(m1["stages"]["evaluate"]["config"]) == {"dataset", "evaluate", "decode"}


def test_changed_config_invalidates_the_stage_and_its_dependents(small_job, tmp_path):
    run_pipeline(small_job, FOUNDATION)
    changed = load_config(None, [f"run_dir={small_job.run_dir}", "dataset.synthetic.num_users=120",
                                 "dataset.synthetic.num_items=60", "dataset.synthetic.num_clusters=4",
                                 "evaluate.ks=[1,5]"])
    assert stage_hash(changed, "data") == stage_hash(small_job, "data")
    assert stage_hash(changed, "evaluate") != stage_hash(small_job, "evaluate")
    m = run_pipeline(changed, FOUNDATION)
    assert {name: s["status"] for name, s in m["stages"].items()} == {"data": "skipped", "popularity": "skipped",
                                                                      "evaluate": "ok"}
    metrics = Store(small_job.run_dir).read_json("eval/metrics.json")
    assert "HR@1" in metrics["popularity"]["overall"]


def test_a_run_with_another_config_keeps_what_made_the_other_stages_outputs(small_job):
    run_pipeline(small_job, FOUNDATION)
    changed = load_config(None, [f"run_dir={small_job.run_dir}", "dataset.synthetic.num_users=120",
                                 "dataset.synthetic.num_items=60", "dataset.synthetic.num_clusters=4",
                                 "evaluate.ks=[1,5]"])
    run_pipeline(changed, ["evaluate"])
    manifest = Store(small_job.run_dir).read_json("manifest.json")
    assert manifest["config"]["evaluate"]["ks"] == [1, 5]  # this invocation's
    assert manifest["stages"]["evaluate"]["config"]["evaluate"]["ks"] == [1, 5]
    assert manifest["stages"]["data"]["config"]["dataset"] == small_job.dataset.model_dump(mode="json")
    assert [p["config"]["evaluate"]["ks"] for p in manifest["previous_configs"]] == [small_job.evaluate.ks]
    run_pipeline(changed, ["evaluate"])  # the same config again adds no entry
    assert len(Store(small_job.run_dir).read_json("manifest.json")["previous_configs"]) == 1


def test_interrupted_stage_is_not_trusted_and_reruns(small_job, monkeypatch):
    import cemg_ray.evaluate.popularity as pop
    from cemg_ray.pipeline import get_stage

    run_pipeline(small_job, ["data"])
    st = get_stage("popularity")
    original = st.run

    def crash(ctx):
        ctx.store.write_json("baselines/popularity.json", {"partial": True})
        raise KeyboardInterrupt("killed mid-stage")

    monkeypatch.setattr(st, "run", crash)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(small_job, ["popularity"])
    store = Store(small_job.run_dir)
    assert not is_done(store, small_job, "popularity")
    assert store.read_json("manifest.json")["stages"]["popularity"]["status"] == "failed"
    monkeypatch.setattr(st, "run", original)
    m = run_pipeline(small_job, ["data", "popularity"])
    assert m["stages"]["data"]["status"] == "skipped" and m["stages"]["popularity"]["status"] == "ok"
    assert "counts" in store.read_json("baselines/popularity.json")
    assert pop.PopularityRecommender.from_store(store).counts.sum() > 0


def test_a_failed_rerun_puts_the_last_good_outputs_and_marker_back(small_job, monkeypatch):
    from cemg_ray.pipeline import get_stage

    run_pipeline(small_job, ["data", "popularity"])
    store = Store(small_job.run_dir)
    good = store.read_json("baselines/popularity.json")
    marker = store.read_json("_stages/popularity.json")
    st = get_stage("popularity")

    def fail(ctx):
        assert not store.exists("_stages/popularity.json")  # not trusted while it re-runs
        ctx.store.write_json("baselines/popularity.json", {"partial": True})
        raise RuntimeError("bad config")

    monkeypatch.setattr(st, "run", fail)
    with pytest.raises(RuntimeError, match="bad config"):
        run_pipeline(small_job, ["popularity"], force=True)
    assert store.read_json("baselines/popularity.json") == good
    assert store.read_json("_stages/popularity.json") == marker and is_done(store, small_job, "popularity")
    assert not store.exists("_previous/popularity")


def test_a_rerun_killed_before_it_could_restore_keeps_the_last_good_copy_for_the_next_attempt(small_job):
    from cemg_ray.pipeline import restore, set_aside

    run_pipeline(small_job, ["data", "popularity"])
    store = Store(small_job.run_dir)
    good = store.read_json("baselines/popularity.json")
    assert set_aside(store, "popularity")  # a re-run starts ...
    store.write_json("baselines/popularity.json", {"partial": True})  # ... and is SIGKILLed: no restore ran
    assert not is_done(store, small_job, "popularity")
    assert set_aside(store, "popularity")  # the next attempt still has the last good copy to fall back on
    assert store.read_json("_previous/popularity/baselines/popularity.json") == good
    restore(store, "popularity")  # (what a failure of that attempt does)
    assert store.read_json("baselines/popularity.json") == good and is_done(store, small_job, "popularity")
    m = run_pipeline(small_job, ["popularity"], force=True)  # a successful re-run drops the copy
    assert m["stages"]["popularity"]["status"] == "ok" and not store.exists("_previous/popularity")


def test_store_move_replaces_the_target_locally_and_on_s3(tmp_path, s3_bucket):
    for root in (str(tmp_path / "local"), f"{s3_bucket}/move"):
        store = Store(root)
        store.write_json("a/x.json", {"v": 1})
        store.write_json("a/sub/y.json", {"v": 2})
        store.write_json("b/old.json", {"v": 0})
        store.move("a", "b")
        assert store.list("b", recursive=True) == ["b/sub/y.json", "b/x.json"] and not store.exists("a")
        assert store.read_json("b/sub/y.json") == {"v": 2}
        store.move("missing", "b")  # nothing to move: the target stays
        assert store.exists("b/x.json")


def test_unknown_stage_is_an_error(small_job):
    with pytest.raises(KeyError, match="unknown stage"):
        resolve_stages(small_job, ["data", "trian"])


def test_foundation_stages_on_s3(s3_bucket):
    cfg = load_config(None, [f"run_dir={s3_bucket}/runs/demo", "dataset.synthetic.num_users=80",
                             "dataset.synthetic.num_items=40"])
    run_pipeline(cfg, FOUNDATION)
    store = Store(cfg.run_dir)
    assert is_done(store, cfg, "evaluate")
    metrics = store.read_json("eval/metrics.json")
    assert metrics["popularity"]["users"] == 80
    assert store.exists("eval/report.md") and store.exists("eval/ndcg.png")


def test_the_pipeline_checks_declared_dependencies_before_a_stage_runs(tmp_path) -> None:
    """``@stage(after=...)`` is the one declaration: a stage whose upstream has not run fails before it starts,
    naming the missing stage, and leaves no marker or manifest entry claiming it ran."""
    from cemg_ray.config import load_config
    from cemg_ray.pipeline import StageMissingError, run_pipeline
    from cemg_ray.store import Store

    cfg = load_config(None, [f"run_dir={tmp_path}"])
    with pytest.raises(StageMissingError, match="stage 'data' has no completed output"):
        run_pipeline(cfg, ["popularity"])
    store = Store(str(tmp_path))
    assert not store.exists("_stages/popularity.json")
