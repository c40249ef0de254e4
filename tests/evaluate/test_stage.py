"""The evaluate stage keeps the committed rows of models it did not re-run, while their models are unchanged."""

import logging
import shutil

import pytest

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


def test_a_cold_start_floor_makes_only_the_lists_that_reach_it_eligible(demo_run, tmp_path, caplog):
    """``evaluate.select_cold_start_floor``: a list below ratio x the reference's validation cold-start HR@10 cannot
    be the default; when none reaches the floor the best overall is kept, and the file and the log say so."""
    from cemg_ray.artifacts import DEFAULT_MODEL

    _, demo_store = demo_run
    run_dir = tmp_path / "run"
    shutil.copytree(demo_store.root_uri, run_dir)
    store = Store(str(run_dir))
    lists = "evaluate.select_default=[cemg,cemg:cold_share,cemg:dense]"
    run_pipeline(_job(run_dir, "evaluate.models=[popularity]", lists), ["evaluate"])
    free = store.read_json(DEFAULT_MODEL)
    assert "cold_start_floor" not in free and set(free["valid"]) == {"cemg", "cemg:cold_share", "cemg:dense"}
    cold = {n: row["cold_start"]["HR@10"] for n, row in free["valid"].items()}
    assert max(cold.values()) > 0, "no list hits a cold-start target on the demo's validation split"
    reference = min((n for n in cold if cold[n] > 0), key=cold.get)  # the weakest list that hits any

    def best(names: list[str]) -> str:
        return max(names, key=lambda n: (free["valid"][n]["NDCG@10"], free["valid"][n]["HR@10"]))

    coldest = max(cold.values())
    cases = ((1000.0, None),  # nobody reaches 1000x
             (1e-6, best([n for n in cold if cold[n] >= 1e-6 * cold[reference]])),
             (coldest / cold[reference] * (1 - 1e-9), best([n for n in cold if cold[n] == coldest])))
    for ratio, expect in cases:
        run_pipeline(_job(run_dir, "evaluate.models=[popularity]", lists,
                          f"evaluate.select_cold_start_floor={{reference: '{reference}', ratio: {ratio!r}}}"),
                     ["evaluate"])
        choice = store.read_json(DEFAULT_MODEL)
        floor = choice["cold_start_floor"]
        assert floor["reference"] == reference and floor["HR@10"] == pytest.approx(ratio * cold[reference])
        assert choice["valid"] == free["valid"]  # the same validation figures, the reference's among them
        if expect is None:  # the best overall, said in the file and the log
            assert floor["floor_met"] is False and choice["model"] == free["model"]
            assert "no list in evaluate.select_default reaches" in caplog.text
        else:
            assert floor["floor_met"] is True and choice["model"] == expect
            assert cold[expect] >= floor["HR@10"]
        assert floor["vacuous"] is False
    # a reference that hits no cold-start target (popularity never ranks a cold item high): a floor of zero, said so
    run_pipeline(_job(run_dir, "evaluate.models=[popularity]", lists,
                      "evaluate.select_cold_start_floor={reference: popularity, ratio: 1.5}"), ["evaluate"])
    floor = store.read_json(DEFAULT_MODEL)["cold_start_floor"]
    assert floor["vacuous"] is True and floor["HR@10"] == 0 and "admits every list" in caplog.text


def test_the_default_list_gets_its_test_row_even_when_not_in_evaluate_models(demo_run, tmp_path):
    from cemg_ray.artifacts import DEFAULT_MODEL

    _, demo_store = demo_run
    run_dir = tmp_path / "run"
    shutil.copytree(demo_store.root_uri, run_dir)
    store = Store(str(run_dir))
    store.write_json(METRICS, {name: row for name, row in store.read_json(METRICS).items() if name == "popularity"})
    run_pipeline(_job(run_dir, "evaluate.models=[popularity]", "evaluate.select_default=[cemg:cold_share,cemg:dense]"),
                 ["evaluate"])
    chosen = store.read_json(DEFAULT_MODEL)["model"]
    rows = store.read_json(METRICS)
    assert set(rows) == {"popularity", chosen} and rows[chosen]["split"] == "test"


@pytest.mark.parametrize("candidates", ["[cemg,cemg:dense]", "[cemg,sasrec,cemg:beam]"])
def test_the_stage_on_actors_writes_what_it_writes_in_the_driver(demo_run, tmp_path, candidates):
    """Candidates among the models: selection and test in one pass of the actors; otherwise two passes. Either
    way the metrics and the choice equal the driver's to the last digit (all but the throughput)."""
    from cemg_ray.artifacts import DEFAULT_MODEL

    _, demo_store = demo_run
    written = {}
    for actors in ("0", "1"):
        run_dir = tmp_path / f"actors{actors}"
        shutil.copytree(demo_store.root_uri, run_dir)
        manifest = run_pipeline(_job(run_dir, f"evaluate.num_actors={actors}", "evaluate.cpus_per_actor=0.5",
                                     "evaluate.models=[popularity,sasrec,cemg,cemg:dense]",
                                     f"evaluate.select_default={candidates}"), ["evaluate"])
        assert manifest["stages"]["evaluate"]["status"] == "ok"
        store = Store(str(run_dir))
        metrics = {name: {k: v for k, v in row.items() if k != "users_per_s"}
                   for name, row in store.read_json(METRICS).items()}
        written[actors] = (metrics, store.read_json(DEFAULT_MODEL), manifest["stages"]["evaluate"]["driver"])
    assert written["1"][:2] == written["0"][:2]
    assert written["0"][1]["model"] in written["0"][0]  # the chosen list has its test row
