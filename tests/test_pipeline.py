import pytest

import cemg_ray.evaluate.stage as popularity_stage
from cemg_ray.config import JobConfig, load_config
from cemg_ray.pipeline import resolve_stages, run_pipeline
from cemg_ray.stagekit import is_done, stage_hash
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
    for name in FOUNDATION:  # what each stage cost the driver process, beside its wall time
        driver = manifest["stages"][name]["driver"]
        assert driver["cpu_s"] >= 0 and driver["peak_rss_mib"] > 0 and driver["rss_growth_mib"] >= 0
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

    run_pipeline(small_job, ["data"])
    original = popularity_stage.run_popularity  # the stage table imports the function when its stage runs

    def crash(ctx):
        ctx.store.write_json("baselines/popularity.json", {"partial": True})
        raise KeyboardInterrupt("killed mid-stage")

    monkeypatch.setattr(popularity_stage, "run_popularity", crash)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(small_job, ["popularity"])
    store = Store(small_job.run_dir)
    assert not is_done(store, small_job, "popularity")
    assert store.read_json("manifest.json")["stages"]["popularity"]["status"] == "failed"
    monkeypatch.setattr(popularity_stage, "run_popularity", original)
    m = run_pipeline(small_job, ["data", "popularity"])
    assert m["stages"]["data"]["status"] == "skipped" and m["stages"]["popularity"]["status"] == "ok"
    assert "counts" in store.read_json("baselines/popularity.json")
    assert pop.PopularityRecommender.from_store(store).counts.sum() > 0


def _completed_popularity(job: JobConfig) -> tuple:
    """(store, its popularity output, its marker) after a first good run."""
    run_pipeline(job, ["data", "popularity"])
    store = Store(job.run_dir)
    return store, store.read_json("baselines/popularity.json"), store.read_json("_stages/popularity.json")


def test_a_rerun_leaves_the_last_good_outputs_and_marker_readable_until_it_commits(small_job, monkeypatch):
    store, good, marker = _completed_popularity(small_job)
    original = popularity_stage.run_popularity
    seen = {}

    def rerun(ctx):
        ctx.store.write_json("baselines/popularity.json", {"partial": True})
        # half-way through, a reader of the run directory still sees the last good output and its marker
        seen["output"] = store.read_json("baselines/popularity.json")
        seen["done"] = is_done(store, small_job, "popularity")
        seen["own"] = ctx.store.read_json("baselines/popularity.json")  # the stage reads what it wrote
        return original(ctx)

    monkeypatch.setattr(popularity_stage, "run_popularity", rerun)
    run_pipeline(small_job, ["popularity"], force=True)
    assert seen == {"output": good, "done": True, "own": {"partial": True}}
    assert store.read_json("baselines/popularity.json") == good  # the committed re-run (same counts)
    assert store.read_json("_stages/popularity.json")["finished"] > marker["finished"]
    assert not store.exists("_staging/popularity") and not store.exists("_previous/popularity")


def test_a_failed_rerun_never_touches_the_last_good_outputs_or_marker(small_job, monkeypatch):
    store, good, marker = _completed_popularity(small_job)

    def fail(ctx):
        ctx.store.write_json("baselines/popularity.json", {"partial": True})
        raise RuntimeError("bad config")

    monkeypatch.setattr(popularity_stage, "run_popularity", fail)
    with pytest.raises(RuntimeError, match="bad config"):
        run_pipeline(small_job, ["popularity"], force=True)
    assert store.read_json("baselines/popularity.json") == good
    assert store.read_json("_stages/popularity.json") == marker and is_done(store, small_job, "popularity")


def test_a_killed_attempt_leaves_its_staging_for_the_same_config_and_not_for_another(small_job):
    from cemg_ray.pipeline import staging_store

    run_pipeline(small_job, ["data"])
    store = Store(small_job.run_dir)
    first = staging_store(store, "popularity", "hash-a")
    first.write_json("baselines/popularity.json", {"checkpoint": 1})  # ... and the attempt is SIGKILLed
    assert store.read_json("_staging/popularity/baselines/popularity.json") == {"checkpoint": 1}
    assert not store.exists("baselines/popularity.json")  # nothing half-written where readers look
    again = staging_store(store, "popularity", "hash-a")  # the same config resumes from what it left
    assert again.read_json("baselines/popularity.json") == {"checkpoint": 1}
    other = staging_store(store, "popularity", "hash-b")  # another config starts clean
    assert not other.exists("baselines/popularity.json")


def test_a_staged_view_redirects_reads_writes_and_listings_of_the_stage_outputs_only(tmp_path, s3_bucket):
    for root in (str(tmp_path / "local"), f"{s3_bucket}/staged"):
        store = Store(root)
        store.write_json("data/old.json", {"v": 0})
        store.write_json("eval/metrics.json", {"v": 0})
        view = store.staged(("eval",), "_staging/evaluate")
        view.write_json("eval/metrics.json", {"v": 1})
        view.write_json("eval/new.json", {"v": 1})
        assert view.read_json("data/old.json") == {"v": 0}  # upstream reads go to the run directory
        assert view.read_json("eval/metrics.json") == {"v": 1} and store.read_json("eval/metrics.json") == {"v": 0}
        assert view.list("eval") == ["eval/metrics.json", "eval/new.json"]
        assert "eval/new.json" not in store.list("eval")
        assert view.committed_uri("eval/metrics.json") == store.uri("eval/metrics.json")
        assert store.read_json("_staging/evaluate/eval/new.json") == {"v": 1}


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
    """The stage table (cemg_ray/stages.py) is the one declaration: a stage whose upstream has not run fails before
    it starts, naming the missing stage, and leaves no marker or manifest entry claiming it ran."""
    from cemg_ray.config import load_config
    from cemg_ray.pipeline import run_pipeline
    from cemg_ray.stagekit import StageMissingError
    from cemg_ray.store import Store

    cfg = load_config(None, [f"run_dir={tmp_path}"])
    with pytest.raises(StageMissingError, match="stage 'data' has no completed output"):
        run_pipeline(cfg, ["popularity"])
    store = Store(str(tmp_path))
    assert not store.exists("_stages/popularity.json")
