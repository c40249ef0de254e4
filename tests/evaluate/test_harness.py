import numpy as np
import pytest

from cemg_ray.data.split import leave_one_out
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.evaluate.popularity import PopularityRecommender


class Oracle:
    """Puts the true target at a chosen rank; proves the harness reads ranks correctly.

    Knows each user's target by the items of its history (distinct for every user of the split it is given), so it
    holds whatever order the harness asks in.
    """

    name = "oracle"

    def __init__(self, histories, targets, rank):
        self.target_of = {tuple(h.tolist()): t for h, t in zip(histories, targets)}
        assert len(self.target_of) == len(targets), "two users share a history: the oracle cannot tell them apart"
        self.rank = rank

    def recommend(self, histories, k):
        out = np.full((len(histories), k), -1)
        for row, hist in enumerate(histories):
            fill = [i for i in range(100, 100 + k)]
            fill[self.rank] = self.target_of[tuple(np.asarray(hist).tolist())]
            out[row] = fill
        return out, np.zeros_like(out, dtype=np.float32)


def _split():
    rng = np.random.default_rng(0)
    seqs = [rng.choice(50, size=rng.integers(3, 9), replace=False) for _ in range(40)]
    return leave_one_out(seqs, 200, max_len=5)


def test_oracle_at_rank_3_gives_exact_metrics():
    split = _split()
    res = evaluate(Oracle(*split.histories("test"), 3), split, "test", [1, 5, 20], batch_size=7)
    assert res["overall"]["HR@1"] == 0 and res["overall"]["HR@5"] == 1.0
    assert res["overall"]["NDCG@5"] == pytest.approx(1 / np.log2(5))
    assert res["users"] == 40
    # every user's target at the same rank: no spread, so no standard error
    assert res["overall_se"]["NDCG@5"] == 0.0 and res["overall_se"]["HR@20"] == 0.0


def test_cold_start_subset_is_targets_with_few_training_interactions():
    split = _split()
    res = evaluate(PopularityRecommender(split.train_counts), split, "test", [10])
    cold = split.train_counts[split.test_target] <= 5
    assert res["cold_start_users"] == int(cold.sum())
    # popularity ranks by training counts: its hits are exactly the targets in its top 10
    top = set(np.argsort(-split.train_counts, kind="stable")[:10].tolist())
    assert res["overall"]["HR@10"] == pytest.approx(np.mean([t in top for t in split.test_target]))
