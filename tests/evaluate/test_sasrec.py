import numpy as np
import torch

from cemg_ray.config import SyntheticConfig
from cemg_ray.data.split import leave_one_out
from cemg_ray.data.synthetic import make_catalog
from cemg_ray.evaluate.config import SASRecConfig
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.evaluate.popularity import PopularityRecommender
from cemg_ray.evaluate.sasrec import SASRec, SASRecRecommender, _left_pad, train_sasrec


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
    model, losses = train_sasrec(split, SASRecConfig(epochs=30, lr=2e-3))
    assert losses[-1] < losses[0] * 0.8
    sas = evaluate(SASRecRecommender(model), split, "valid", [10])
    pop = evaluate(PopularityRecommender(split.train_counts), split, "valid", [10])
    assert sas["overall"]["HR@10"] > 3 * pop["overall"]["HR@10"]
    items, scores = SASRecRecommender(model).recommend(split.test_history[:3], 5)
    assert items.shape == (3, 5) and np.all(np.diff(scores, axis=1) <= 0)
