import numpy as np
import torch

from cemg_ray.config import SyntheticConfig
from cemg_ray.data.split import leave_one_out
from cemg_ray.data.synthetic import make_catalog
from cemg_ray.evaluate.config import SASRecConfig
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.evaluate.popularity import PopularityRecommender
from cemg_ray.evaluate.sasrec import SASRec, SASRecRecommender, _left_pad, _trim_left, train_sasrec, valid_ndcg


def _split():
    cat = make_catalog(SyntheticConfig(num_users=300, num_items=120, num_clusters=4))
    return leave_one_out(cat.sequences, cat.num_items)


def test_eval_mode_matches_train_mode_without_dropout():
    """PyTorch's eval fast path must not turn padded rows into NaN (it did with a key-padding mask)."""
    split = _split()
    model = SASRec(split.num_items, SASRecConfig(dropout=0.0))
    x = torch.from_numpy(_left_pad(split.test_history[:8], 50))
    train_out = model.train()(x)[:, -1]
    with torch.no_grad():
        eval_out = model.eval()(x)[:, -1]
    assert torch.isfinite(eval_out).all()
    torch.testing.assert_close(train_out, eval_out, atol=1e-5, rtol=1e-5)


def test_learns_the_planted_next_item_structure():
    split = _split()
    model, history = train_sasrec(split, SASRecConfig(epochs=30, lr=2e-3, dropout=0.2))
    assert history[-1]["loss"] < history[0]["loss"] * 0.8
    sas = evaluate(SASRecRecommender(model), split, "valid", [10])
    pop = evaluate(PopularityRecommender(split.train_counts), split, "valid", [10])
    assert sas["overall"]["HR@10"] > 3 * pop["overall"]["HR@10"]
    items, scores = SASRecRecommender(model).recommend(split.test_history[:3], 5)
    assert items.shape == (3, 5) and np.all(np.diff(scores, axis=1) <= 0)


def test_trimmed_batches_equal_full_width_ones():
    """Dropping all-padding columns is exact: positions count back from the last item."""
    split = _split()
    model = SASRec(split.num_items, SASRecConfig(dropout=0.0)).eval()
    x = torch.from_numpy(_left_pad(split.test_history[:16], 50))
    trimmed, = _trim_left(x)
    assert trimmed.shape[1] < x.shape[1]
    with torch.no_grad():
        torch.testing.assert_close(model(trimmed)[:, -1], model(x)[:, -1], atol=1e-5, rtol=1e-5)


def test_early_stopping_keeps_the_best_validation_epoch():
    split = _split()
    cfg = SASRecConfig(epochs=16, patience=2, lr=2e-3)
    model, history = train_sasrec(split, cfg)
    scores = [row["valid_NDCG@10"] for row in history]
    best = int(np.argmax(scores))
    # stopped `patience` epochs after the best one (or ran out of epochs), and returned the best weights
    assert len(history) == cfg.epochs or len(history) == best + 1 + cfg.patience
    hr, ndcg = valid_ndcg(model, split.valid_history, split.valid_target)
    assert ndcg == scores[best]


def test_valid_ndcg_agrees_with_the_harness():
    """The per-epoch figure is the harness's full-ranking NDCG@10 with seen items removed."""
    split = _split()
    model, _ = train_sasrec(split, SASRecConfig(epochs=3, lr=2e-3))
    # a target the user had already seen is a miss in both (the harness removes seen items)
    split.valid_target[:5] = [h[-1] for h in split.valid_history[:5]]
    hr, ndcg = valid_ndcg(model, split.valid_history, split.valid_target)
    res = evaluate(SASRecRecommender(model), split, "valid", [10])
    assert abs(res["overall"]["NDCG@10"] - ndcg) < 1e-6 and abs(res["overall"]["HR@10"] - hr) < 1e-9
    assert hr > 0


def test_the_stage_trains_in_a_ray_train_worker_and_its_weights_equal_training_in_process(small_job):
    """The driver only writes what the worker reported (issue 27: no heavy work in the driver); same seed, same
    threads, so the same weights as :func:`train_sasrec` in this process."""
    import os

    from safetensors.torch import load

    from cemg_ray import artifacts
    from cemg_ray.data.split import load_split
    from cemg_ray.pipeline import run_pipeline
    from cemg_ray.store import Store

    cfg = small_job.model_copy(update={"sasrec": SASRecConfig(epochs=3, valid_users=40, cpus_per_worker=1)})
    report = run_pipeline(cfg, ["data", "sasrec"])["stages"]["sasrec"]["report"]
    assert report["worker"]["pid"] != os.getpid() and report["epochs"] == 3
    store = Store(cfg.run_dir)
    assert not store.exists(artifacts.SASREC_CHECKPOINTS)  # the hand-over folder is gone, the weights in place
    staged = load(store.read_bytes(artifacts.SASREC))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, history = train_sasrec(load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max), cfg.sasrec)
    finally:
        torch.set_num_threads(threads)
    assert [row["valid_NDCG@10"] for row in history] == [row["valid_NDCG@10"] for row in report["history"]]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(staged[name], tensor, rtol=0, atol=0)
