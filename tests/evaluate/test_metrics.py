import numpy as np
import pytest

from cemg_ray.evaluate.metrics import hr_ndcg, standard_errors, target_ranks


def test_target_ranks():
    topk = np.array([[3, 1, 2], [5, 6, 7], [9, 8, -1]])
    assert target_ranks(topk, np.array([2, 4, 9])).tolist() == [2, -1, 0]


def test_hand_computed_hr_and_ndcg():
    # ranks 0, 2, miss, 6 over 4 users
    ranks = np.array([0, 2, -1, 6])
    m = hr_ndcg(ranks, [1, 3, 10])
    assert m["HR@1"] == pytest.approx(1 / 4)
    assert m["HR@3"] == pytest.approx(2 / 4)
    assert m["HR@10"] == pytest.approx(3 / 4)
    assert m["NDCG@1"] == pytest.approx(1 / 4)
    assert m["NDCG@3"] == pytest.approx((1 + 1 / np.log2(4)) / 4)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / np.log2(4) + 1 / np.log2(8)) / 4)


def test_empty_ranks_give_zero():
    assert hr_ndcg(np.array([], dtype=int), [10]) == {"HR@10": 0.0, "NDCG@10": 0.0}


def test_standard_errors_are_the_per_user_sample_std_over_root_n():
    ranks = np.array([0, 2, -1, 6])
    se = standard_errors(ranks, [3])
    hits = np.array([1.0, 1.0, 0.0, 0.0])
    gains = np.array([1.0, 1 / np.log2(4), 0.0, 0.0])
    assert se["HR@3"] == pytest.approx(hits.std(ddof=1) / 2)
    assert se["NDCG@3"] == pytest.approx(gains.std(ddof=1) / 2)
    # one user: no spread to measure
    assert standard_errors(np.array([0]), [1]) == {"HR@1": 0.0, "NDCG@1": 0.0}


def test_the_report_lists_standard_errors_and_reads_metrics_without_them():
    from cemg_ray.evaluate.report import metrics_markdown

    row = {"overall": {"HR@10": 0.5, "NDCG@10": 0.3}, "cold_start": {"HR@10": 0.1, "NDCG@10": 0.05}, "users": 4}
    new = {**row, "overall_se": {"HR@10": 0.25, "NDCG@10": 0.125}}
    text = metrics_markdown({"m": new, "old": row}, [10])
    assert "- m, overall: HR@10 0.2500, NDCG@10 0.1250" in text
    assert "- old," not in text and "| old | 4 |" in text
