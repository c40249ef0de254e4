"""A catalog of interactions only (``dataset.format: sequences``: no item text, no images) runs every stage.

The collaborative modality alone (LightGCN's item embeddings through the fusion + RQ-VAE) gives every item a unique
code, the item-level generator (``content_input: true``: its content vector is the fused one, here the
collaborative block) trains and beats the popularity floor, and the export writes one list per user. A job that
leaves the tokenizer no input (``tokenize.use_collab: false`` on such a catalog) is refused before any stage runs.

The fixture ``tests/fixtures/sequences/interactions.txt`` (3 KB, used by ``jobs/sequences-example.yaml`` too) is
what :func:`make_sequences` writes; a test keeps the two the same.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from cemg_ray.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "sequences" / "interactions.txt"
JOB = REPO / "jobs" / "sequences-example.yaml"
STAGES = ["data", "popularity", "sasrec", "features", "pca", "lightgcn", "tokenize", "train", "evaluate", "export"]
# the example job shrunk as conftest.FAST_DEMO shrinks the demo: a couple of minutes on 2 busy cores
FAST = ["sasrec.epochs=3", "lightgcn.epochs=20", "tokenize.epochs=60", "train.epochs=6",
        "evaluate.models=[popularity,sasrec,cemg]", "export.date=2026-12-06"]


def make_sequences(seed: int = 0, num_users: int = 150, num_items: int = 60, num_clusters: int = 4,
                   cold_items: int = 2) -> str:
    """``user item item ...`` lines: each user walks a ring of one cluster's items (step 1, or 2 one time in four),
    5 to 8 items, never repeating one; users 1..``cold_items`` end with an item seen nowhere else (ids 61, 62),
    which is then a test target with no training interaction. Only ``Random.random`` is drawn (its stream is
    stable across Python versions)."""
    rnd = random.Random(seed)
    per = num_items // num_clusters
    rings = [[c + 1 + num_clusters * k for k in range(per)] for c in range(num_clusters)]
    lines = []
    for user in range(1, num_users + 1):
        ring = rings[int(rnd.random() * num_clusters)]
        pos, length = int(rnd.random() * per), 5 + int(rnd.random() * 4)
        seq = []
        for _ in range(length):
            seq.append(ring[pos % per])
            pos += 1 if rnd.random() < 0.75 else 2
        if user <= cold_items:
            seq.append(num_items + user)
        lines.append(" ".join(map(str, [user, *seq])))
    return "\n".join(lines) + "\n"


def test_committed_fixture_is_what_make_sequences_writes() -> None:
    assert FIXTURE.read_text() == make_sequences(), "regenerate: FIXTURE.write_text(make_sequences())"
    lines = [line.split() for line in FIXTURE.read_text().splitlines()]
    assert len(lines) == 150 and all(len(set(s[1:])) == len(s) - 1 for s in lines)  # no item twice in a sequence


def test_the_example_job_reads_the_fixture() -> None:
    cfg = load_config(JOB)
    assert cfg.dataset.format == "sequences" and (REPO / cfg.dataset.path).resolve() == FIXTURE
    assert cfg.tokenize.use_collab and cfg.train.content_input


def test_no_input_left_for_the_tokenizer_is_refused_before_any_stage(tmp_path) -> None:
    from cemg_ray.preflight import preflight

    cfg = load_config(JOB, [f"run_dir={tmp_path / 'run'}", f"dataset.path={FIXTURE}", "tokenize.use_collab=false"])
    with pytest.raises(ConfigError) as err:
        preflight(cfg, STAGES, "job.yaml")
    assert len(err.value.errors) == 1
    assert err.value.errors[0].startswith("job.yaml: tokenize.use_collab: false leaves the tokenizer no input")
    assert "'sequences'" in err.value.errors[0]
    preflight(cfg, ["data", "popularity", "sasrec"], "job.yaml")  # no tokenize stage asked: nothing to refuse
    # any catalog, when text and images are switched off too
    off = load_config(None, [f"run_dir={tmp_path / 'run2'}", "tokenize.use_collab=false", "features.use_text=false",
                             "tokenize.use_image=false"])
    with pytest.raises(ConfigError, match=r"tokenize\.use_collab: false .*features\.use_text: false"):
        preflight(off, ["tokenize"], "job.yaml")


def test_an_item_without_content_borrows_the_mean_of_every_donor() -> None:
    from cemg_ray.tokenize.inputs import borrow_collab

    rng = np.random.default_rng(0)
    collab = rng.normal(size=(8, 3)).astype(np.float32)
    donors, targets = np.arange(6), np.array([6, 7])
    content = np.zeros((8, 4), np.float32)  # no text, no image anywhere
    out = borrow_collab(content, collab, donors, targets, n=2)
    np.testing.assert_allclose(out, np.tile(collab[:6].mean(0), (2, 1)), rtol=1e-6)
    content[:, 0] = 1.0  # with content the nearest donors still decide
    content[1, :] = [0, 1, 0, 0]
    content[6, :] = [0, 1, 0, 0]
    content[7, :] = 0.0  # ... except for an item that has none
    out = borrow_collab(content, collab, donors, targets, n=1)
    np.testing.assert_allclose(out[0], collab[1], rtol=1e-6)
    np.testing.assert_allclose(out[1], collab[:6].mean(0), rtol=1e-6)


def test_has_text() -> None:
    import pyarrow as pa

    from cemg_ray.features.stage import has_text

    assert not has_text(pa.table({"text": pa.array(["", None, " \t"], pa.string())}))
    assert has_text(pa.table({"text": pa.array(["", "Title: x"], pa.string())}))


@pytest.mark.slow
def test_a_sequences_only_catalog_runs_every_stage(tmp_path) -> None:
    import pyarrow.dataset as pads
    import ray

    from cemg_ray.pipeline import run_pipeline
    from cemg_ray.store import Store

    run_dir = tmp_path / "run"
    cfg = load_config(JOB, [f"run_dir={run_dir}", f"dataset.path={FIXTURE}", *FAST])
    started_here = not ray.is_initialized()
    try:
        manifest = run_pipeline(cfg, STAGES)
    finally:
        if started_here and ray.is_initialized():
            ray.shutdown()
    assert {s: r["status"] for s, r in manifest["stages"].items()} == dict.fromkeys(STAGES, "ok")
    store = Store(str(run_dir))

    # features: both modalities written all-missing with a note, no encoder loaded; pca fits nothing
    features = store.read_json("features/report.json")
    for m, reason in (("text", "empty_text"), ("image", "no_image")):
        assert features[m]["missing_by_reason"] == {reason: 62} and features[m]["dim"] == 0
        assert "encoder not run" in features[m]["note"] and "model" not in features[m]
    pca = store.read_json("pca/report.json")
    assert not pca["text"]["available"] and not pca["image"]["available"] and "collaborative" in pca["note"]

    # tokenize: the collaborative modality alone, fusion weights zero, every item a unique code
    tok = store.read_json("tokenize/report.json")
    assert tok["fusion"]["modalities_present"] == {"image": 0, "text": 0}
    assert tok["fusion"]["items_with_both_modalities"] == 0 and tok["fusion"]["alpha_visual_mean"] is None
    assert tok["fusion"]["collab_borrowed_from_neighbours"] == 2  # items 61 and 62: no training interaction
    codes_table = store.read_parquet("tokenize/codes.parquet")
    codes = {iid: tuple(c) for iid, c in zip(codes_table.column("item_id").to_pylist(),
                                             codes_table.column("codes").to_pylist())}
    assert len(codes) == 62 and len(set(codes.values())) == 62
    assert tok["after_disambiguation"]["colliding_items"] == 0
    # the two cold items have no content to find neighbours in: the same borrowed vector, told apart by the
    # disambiguation level only
    assert codes["61"][:-1] == codes["62"][:-1] and codes["61"] != codes["62"]
    # the warm items' codes come from their interactions: more than one level-0 code is used
    assert len({c[0] for c in codes.values()}) > 1

    # evaluate: finite figures, the generator well above the popularity floor
    metrics = store.read_json("eval/metrics.json")
    for model in ("popularity", "sasrec", "cemg"):
        assert metrics[model]["users"] == 150
        assert all(math.isfinite(v) for v in metrics[model]["overall"].values())
    assert metrics["cemg"]["overall"]["HR@10"] > 2 * metrics["popularity"]["overall"]["HR@10"]
    assert metrics["cemg"]["overall"]["NDCG@10"] > metrics["popularity"]["overall"]["NDCG@10"]

    # the blend's content term has nothing to read here (every content vector zero): the plain blend's list
    from cemg_ray import recommenders
    from cemg_ray.features.pca import content_vectors

    assert not content_vectors(store).any()
    histories = [np.array([0, 1, 2]), np.array([5]), np.array([], dtype=np.int64)]
    plain = recommenders.load("cemg:blend(cold_bias=1)", cfg, store).recommend(histories, 10)
    content = recommenders.load("cemg:blend(content_weight=8,cold_bias=1)", cfg, store).recommend(histories, 10)
    np.testing.assert_array_equal(plain[0], content[0])

    # export: one top-10 list per user
    table = pads.dataset(str(run_dir / "export" / "dt=2026-12-06"), format="parquet").to_table().to_pandas()
    assert table["user_id"].nunique() == 150 and len(table) == 150 * cfg.export.k
    ranks = table.groupby("user_id")["rank"].apply(lambda r: sorted(r.tolist()))
    assert all(r == list(range(1, cfg.export.k + 1)) for r in ranks)
