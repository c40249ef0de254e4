"""MSCGRec's identifiers (tokenize.scheme: mscgrec): one residual quantizer per modality, the blocks concatenated
plus a disambiguation level; its config, stage dependencies and registry model; the demo pipeline end to end."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cemg_ray.tokenize.inputs import ItemInputs
from cemg_ray.tokenize.mscgrec import block_layout, identifiers, modality_vectors, quantize_modalities
from tests.conftest import FAST_DEMO, REPO

LEVELS, K = 2, 8


def _vectors(seed: int = 0, n: int = 160, duplicates: int = 40) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Three modalities in planted clusters; the last ``duplicates`` items copy earlier ones in every modality,
    so their codes collide before the disambiguation level."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 5, n)
    out = {}
    for name, d in (("text", 12), ("image", 10), ("collab", 6)):
        centers = rng.normal(0, 3, (5, d))
        x = (centers[cluster] + rng.normal(0, 1, (n, d))).astype(np.float32)
        x[n - duplicates:] = x[:duplicates]
        out[name] = (x, np.ones(n, dtype=bool))
    return out


def test_codes_are_unique_and_level_sizes_are_as_configured() -> None:
    vectors = _vectors()
    blocks = quantize_modalities(vectors, LEVELS, K, seed=0)
    full, sizes = identifiers(blocks, headroom=4)
    semantic = full[:, :-1]
    assert len(np.unique(semantic, axis=0)) < len(full)  # the copies collide before disambiguation
    assert len(np.unique(full, axis=0)) == len(full)  # and no item shares its full code after it
    assert full.shape[1] == 3 * LEVELS + 1
    assert sizes[:-1] == [K] * (3 * LEVELS)
    assert sizes[-1] == int(full[:, -1].max()) + 1 + 4
    assert (semantic < K).all() and (full < np.asarray(sizes)).all()
    assert block_layout(blocks) == [{"modality": m, "first_level": i * LEVELS, "levels": LEVELS}
                                    for i, m in enumerate(("text", "image", "collab"))]


def test_items_lacking_a_modality_share_its_missing_code_and_that_block_grows_by_one() -> None:
    vectors = _vectors()
    x, present = vectors["image"]
    present = present.copy()
    present[::3] = False
    vectors["image"] = (x, present)
    blocks = quantize_modalities(vectors, LEVELS, K, seed=0)
    full, sizes = identifiers(blocks, headroom=0)
    image = full[:, LEVELS:2 * LEVELS]
    assert (image[~present] == K).all() and (image[present] < K).all()
    assert sizes[:-1] == [K] * LEVELS + [K + 1] * LEVELS + [K] * LEVELS
    assert len(np.unique(full, axis=0)) == len(full)


@pytest.mark.parametrize("changed", ["text", "image", "collab"])
def test_each_block_depends_only_on_its_own_modality(changed: str) -> None:
    """Change one modality's vectors: only its block (and the disambiguation level) may change."""
    before = _vectors(seed=0)
    after = dict(before)
    x, present = before[changed]
    after[changed] = (np.random.default_rng(7).normal(0, 3, x.shape).astype(np.float32), present)
    a, _ = identifiers(quantize_modalities(before, LEVELS, K, seed=0), headroom=0)
    b, _ = identifiers(quantize_modalities(after, LEVELS, K, seed=0), headroom=0)
    for i, name in enumerate(("text", "image", "collab")):
        block = slice(i * LEVELS, (i + 1) * LEVELS)
        if name == changed:
            assert not np.array_equal(a[:, block], b[:, block])
        else:
            assert np.array_equal(a[:, block], b[:, block]), name


def test_a_modality_off_or_missing_for_the_whole_catalog_is_skipped_with_the_reason() -> None:
    from cemg_ray.tokenize.config import TokenizeConfig

    n = 6
    inputs = ItemInputs(image=np.zeros((n, 4), np.float32), text=np.ones((n, 4), np.float32),
                        collab=np.ones((n, 3), np.float32), present=np.array([[False, True]] * n),
                        collab_borrowed=np.zeros(n, bool), scales={})
    used, skipped = modality_vectors(inputs, TokenizeConfig(scheme="mscgrec"))
    assert list(used) == ["text", "collab"]
    assert skipped == {"image": "missing for every item of the catalog"}
    inputs.collab = np.zeros((n, 0), np.float32)
    used, skipped = modality_vectors(inputs, TokenizeConfig(scheme="mscgrec", use_collab=False, use_text=False))
    assert used == {} and skipped["collab"] == "switched off (tokenize.use_collab: false)"
    with pytest.raises(ValueError, match="every modality is off or missing"):
        identifiers([], headroom=0)


def test_defaults_keep_the_stage_hashes_and_the_collab_source_picks_the_upstream_stage() -> None:
    from cemg_ray.config import _hash_payload, load_config
    from cemg_ray.stagekit import stage_hash
    from cemg_ray.stages import spec

    new = {"scheme", "modality_levels", "modality_codebook_size", "collab_source"}
    default = load_config(REPO / "jobs" / "demo.yaml")
    assert not new & set(_hash_payload(default.tokenize))  # options left at their defaults are not hashed
    explicit = load_config(REPO / "jobs" / "demo.yaml", ["tokenize.scheme=cemg", "tokenize.collab_source=lightgcn",
                                                         "tokenize.modality_levels=3",
                                                         "tokenize.modality_codebook_size=256"])
    assert stage_hash(explicit, "tokenize") == stage_hash(default, "tokenize")
    mscg = load_config(REPO / "jobs" / "demo.yaml", ["tokenize.scheme=mscgrec"])
    assert stage_hash(mscg, "tokenize") != stage_hash(default, "tokenize")
    deps = spec("tokenize").deps
    assert deps(default) == ("data", "pca", "lightgcn")
    sasrec = load_config(REPO / "jobs" / "mscgrec-cpu.yaml", ["tokenize.collab_source=sasrec"])
    assert deps(sasrec) == ("data", "pca", "sasrec")
    assert stage_hash(sasrec, "tokenize") != stage_hash(load_config(REPO / "jobs" / "mscgrec-cpu.yaml"), "tokenize")
    assert deps(load_config(None, ["tokenize.use_collab=false"])) == ("data", "pca")


def test_shipped_mscgrec_jobs() -> None:
    from cemg_ray.config import load_config

    beauty = load_config(REPO / "jobs" / "mscgrec-cpu.yaml")
    assert beauty.dataset.name == "beauty" and beauty.dataset.max_len == 50
    assert (beauty.tokenize.scheme, beauty.tokenize.modality_levels, beauty.tokenize.modality_codebook_size) == \
        ("mscgrec", 3, 256)
    assert beauty.train.history == "items" and beauty.train.constrained_loss and beauty.train.max_train_s == 3000
    assert "mscgrec" in beauty.evaluate.models
    posters = load_config(REPO / "jobs" / "mscgrec-movielens.yaml")
    assert posters.dataset.format == "movielens" and posters.tokenize.scheme == "mscgrec"
    assert posters.train.constrained_loss and "mscgrec" in posters.evaluate.models
    assert load_config(REPO / "jobs" / "demo.yaml").tokenize.scheme == "cemg"  # the demo stays CEMG


def test_sasrec_item_embeddings_are_read_one_row_down(tmp_path) -> None:
    """The sasrec stage's ``item_emb.weight`` row 0 is padding; row i + 1 is item i."""
    from safetensors.numpy import save

    from cemg_ray import artifacts
    from cemg_ray.store import Store
    from cemg_ray.tokenize.inputs import collab_embeddings

    store = Store(str(tmp_path / "run"))
    weight = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    store.write_bytes(artifacts.SASREC, save({"item_emb.weight": weight, "pos_emb.weight": weight[:2]}))
    assert np.array_equal(collab_embeddings(store, "sasrec"), weight[1:])
    store.write_tensors(artifacts.LIGHTGCN_EMB, {"item_emb": weight[:4]})
    assert np.array_equal(collab_embeddings(store, "lightgcn"), weight[:4])


def test_the_registry_refuses_mscgrec_on_a_cemg_run_and_names_the_run_and_the_scheme(tmp_path) -> None:
    from cemg_ray import artifacts, recommenders
    from cemg_ray.config import load_config
    from cemg_ray.store import Store

    store = Store(str(tmp_path / "run"))
    cfg = load_config(None, [f"run_dir={tmp_path / 'run'}"])
    for meta in ({"level_sizes": [16, 16, 16, 5], "num_levels": 4, "codebook_size": 16},  # before the field
                 {"level_sizes": [16, 16, 16, 5], "num_levels": 4, "codebook_size": 16, "scheme": "cemg"}):
        artifacts.write_codes_meta(store, meta)
        with pytest.raises(recommenders.SchemeMismatchError) as err:
            recommenders.load("mscgrec", cfg, store)
        msg = str(err.value)
        assert store.root_uri in msg and "'cemg'" in msg and "tokenize.scheme" in msg and "'mscgrec'" in msg
    recommenders.check_scheme("cemg", store)  # cemg asks nothing of the scheme


def test_preflight_refuses_to_evaluate_mscgrec_in_a_cemg_job(tmp_path) -> None:
    from cemg_ray.config import ConfigError, load_config
    from cemg_ray.preflight import preflight

    cfg = load_config(None, [f"run_dir={tmp_path / 'run'}", "evaluate.models=[mscgrec]"])
    with pytest.raises(ConfigError, match="evaluate.models: mscgrec needs tokenize.scheme: mscgrec"):
        preflight(cfg, ["data", "evaluate"], "job.yaml")


# --- the demo pipeline with scheme mscgrec, on a tiny synthetic catalog --------------------------------------------
@pytest.fixture(scope="module")
def mscgrec_run(tmp_path_factory, demo_run):
    """The shared demo run's catalog tokenized the mscgrec way: its data, features, pca and lightgcn adopted
    (``cemg_ray.ablate.adopt_stage``), then tokenize, train and evaluate run."""
    from cemg_ray.ablate import adopt_stage
    from cemg_ray.config import load_config
    from cemg_ray.pipeline import run_pipeline
    from cemg_ray.store import Store

    run_dir = tmp_path_factory.mktemp("mscgrec") / "run"
    overrides = [*FAST_DEMO, f"run_dir={run_dir}", "tokenize.scheme=mscgrec", f"tokenize.modality_levels={LEVELS}",
                 f"tokenize.modality_codebook_size={K}", "train.epochs=2", "train.valid_users=50",
                 "train.constrained_loss=true", "evaluate.models=[mscgrec]", "evaluate.select_default=[]"]
    cfg = load_config(REPO / "jobs" / "demo.yaml", overrides)
    store = Store(str(run_dir))
    shared = ("data", "features", "pca", "lightgcn")
    assert all(adopt_stage(demo_run[1], store, cfg, stage) for stage in shared)
    manifest = run_pipeline(cfg, [*shared, "tokenize", "train", "evaluate"])
    assert {s: manifest["stages"][s]["status"] for s in shared} == dict.fromkeys(shared, "skipped")
    assert all(manifest["stages"][s]["status"] == "ok" for s in ("tokenize", "train", "evaluate")), manifest["stages"]
    return cfg, store


def test_the_demo_pipeline_runs_with_mscgrec_codes_and_the_mscgrec_model_evaluates(mscgrec_run) -> None:
    from cemg_ray import recommenders
    from cemg_ray.api import open_run
    from cemg_ray.tokenize.codes import load_codes

    cfg, store = mscgrec_run
    codes = load_codes(store)
    meta = store.read_json("tokenize/meta.json")
    report = store.read_json("tokenize/report.json")
    assert len(np.unique(codes, axis=0)) == len(codes) == cfg.dataset.synthetic.num_items
    assert meta["scheme"] == "mscgrec" and meta["level_sizes"][:-1] == [K] * (3 * LEVELS)
    assert [b["modality"] for b in meta["blocks"]] == ["text", "image", "collab"]
    assert report["skipped_modalities"] == {} and report["after_disambiguation"]["colliding_items"] == 0
    metrics = store.read_json("eval/metrics.json")
    assert metrics["mscgrec"]["users"] > 0 and 0 <= metrics["mscgrec"]["overall"]["HR@10"] <= 1
    history = [np.array([0, 1, 2])]
    ms = recommenders.load("mscgrec", cfg, store)
    cemg = recommenders.load("cemg", cfg, store)  # cemg works on any run: the same generator and beam
    assert np.array_equal(ms.recommend(history, 5)[0], cemg.recommend(history, 5)[0])
    assert ms.model_version != cemg.model_version
    run = open_run(store.root_uri, model="mscgrec")  # the path serving and the export share
    assert len(run.recommend([["item00000", "item00007"]], k=5)[0]) == 5


def test_a_modality_missing_for_the_whole_catalog_is_skipped_by_the_stage_and_reported(mscgrec_run,
                                                                                       tmp_path) -> None:
    """The same run with every image gone: the stage drops the image block, says why, and the text block stays as
    it was."""
    from cemg_ray import artifacts
    from cemg_ray.data.split import load_split
    from cemg_ray.stagekit import StageContext
    from cemg_ray.store import Store
    from cemg_ray.tokenize.codes import load_codes
    from cemg_ray.tokenize.model import load_tokenizer
    from cemg_ray.tokenize.stage import run as tokenize

    cfg, store = mscgrec_run
    with pytest.raises(ValueError, match="tokenize.scheme 'mscgrec'"):
        load_tokenizer(store)  # new-item assignment needs the cemg scheme: said, not a KeyError
    shutil.copytree(store.root_uri, tmp_path / "run")
    copy = Store(str(tmp_path / "run"))
    reduced = dict(copy.read_tensors(artifacts.PCA_REDUCED))
    reduced["image_missing"] = np.ones_like(reduced["image_missing"])
    copy.write_tensors(artifacts.PCA_REDUCED, reduced)
    summary = tokenize(StageContext(cfg, copy, "tokenize"))
    assert summary["skipped_modalities"] == {"image": "missing for every item of the catalog"}
    assert copy.read_json("tokenize/report.json")["skipped_modalities"] == summary["skipped_modalities"]
    assert summary["level_sizes"][:-1] == [K] * (2 * LEVELS)
    before, after = load_codes(store), load_codes(copy)
    assert len(np.unique(after, axis=0)) == len(after)
    assert np.array_equal(after[:, :LEVELS], before[:, :LEVELS])  # text
    # the collaborative block stays, though its codes may move: the items without a training interaction borrow their
    # collaborative vector from their content neighbours (tokenize.cold_collab_neighbours), found without the image
    # now, and the block's k-means sees every item's vector
    cold = load_split(copy, cfg.dataset.max_len, cfg.dataset.cold_start_max).train_counts == 0
    assert cold.any() and len(np.unique(after[:, LEVELS:2 * LEVELS], axis=0)) > 1
