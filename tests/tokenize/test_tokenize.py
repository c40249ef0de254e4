"""Fusion (Eq. 2-3), RQ-VAE losses, unique codes, and the tokenize stage on the planted demo catalog."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemg_ray.tokenize.codes import collision_stats, disambiguate, level_stats, next_free_suffix
from cemg_ray.tokenize.fusion import CollabGuidedFusion, alpha_entropy
from cemg_ray.tokenize.rqvae import ResidualQuantizer


def test_fusion_is_equation_2_and_3() -> None:
    torch.manual_seed(0)
    fusion = CollabGuidedFusion(content_dim=6, collab_dim=4)
    e_v, e_t, e_c = torch.randn(5, 6), torch.randn(5, 6), torch.randn(5, 4)
    present = torch.ones(5, 2, dtype=torch.bool)
    x, alpha = fusion(e_v, e_t, e_c, present)
    q = e_c @ fusion.W_q.weight.T
    logits = torch.stack([(q * (e_v @ fusion.W_k.weight.T)).sum(1), (q * (e_t @ fusion.W_k.weight.T)).sum(1)], 1)
    expected_alpha = torch.softmax(logits, 1)
    assert torch.allclose(alpha, expected_alpha, atol=1e-6)
    expected_x = torch.cat([expected_alpha[:, :1] * e_v + expected_alpha[:, 1:] * e_t, e_c], 1)
    assert torch.allclose(x, expected_x, atol=1e-6)


def test_fusion_missing_modality_and_ablations() -> None:
    torch.manual_seed(0)
    e_v, e_t, e_c = torch.randn(3, 6), torch.randn(3, 6), torch.randn(3, 4)
    present = torch.tensor([[True, True], [False, True], [False, False]])
    _, alpha = CollabGuidedFusion(6, 4)(e_v, e_t, e_c, present)
    assert torch.allclose(alpha[1], torch.tensor([0.0, 1.0])) and torch.allclose(alpha[2], torch.zeros(2))
    x, alpha = CollabGuidedFusion(6, 4, use_guide=False)(e_v, e_t, e_c, present)
    assert torch.allclose(alpha[0], torch.tensor([0.5, 0.5]))
    x, _ = CollabGuidedFusion(6, 4, use_collab=False)(e_v, e_t, e_c, present)
    assert x.shape == (3, 6)
    assert torch.allclose(alpha_entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]])), torch.tensor([1.0, 0.0]))


def test_diversity_loss_is_zero_when_uniform_and_positive_when_collapsed() -> None:
    rq = ResidualQuantizer(num_levels=1, codebook_size=4, dim=2)
    rq.codebooks[0].data = torch.tensor([[10.0, 0], [-10, 0], [0, 10], [0, -10]])
    spread = rq.codebooks[0].data.clone()
    *_, div_uniform, _ = rq(spread, beta=0.25, tau=1.0)
    *_, div_collapsed, _ = rq(spread[:1].repeat(4, 1), beta=0.25, tau=1.0)
    assert float(div_uniform) == pytest.approx(0.0, abs=1e-4)
    assert float(div_collapsed) > 1.0


def test_disambiguation_makes_every_code_unique() -> None:
    codes = np.array([[1, 2], [1, 2], [3, 4], [1, 2], [3, 4], [0, 0]])
    full = disambiguate(codes)
    assert full[:, -1].tolist() == [0, 1, 0, 2, 1, 0]
    assert collision_stats(codes)["colliding_items"] == 5
    assert collision_stats(full)["colliding_items"] == 0
    assert next_free_suffix(full, np.array([1, 2])) == 3
    stats = level_stats(codes, codebook_size=5)
    assert stats[0]["used"] == 3 and stats[0]["utilisation"] == pytest.approx(0.6)
    p = np.array([3, 2, 1]) / 6
    assert stats[0]["perplexity"] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())))


def test_tokenize_stage_on_planted_catalog(demo_run) -> None:
    cfg, store = demo_run
    report = store.read_json("tokenize/report.json")
    codes = np.asarray(store.read_parquet("tokenize/codes.parquet").column("codes").to_pylist())
    items = store.read_parquet("data/items.parquet")
    assert len(codes) == items.num_rows
    assert len(np.unique(codes, axis=0)) == len(codes)  # every item unique
    assert report["after_disambiguation"]["colliding_items"] == 0
    planted = report["planted_clusters"]
    # items of a planted cluster share their first code far more often than two random items do
    assert planted["p_same_code_given_same_cluster"] > 2.5 * planted["p_same_code_any_pair"]
    assert len(report["levels"]) == cfg.tokenize.num_levels
    assert 0 < report["fusion"]["entropy_bits_mean"] <= 1.0
    for png in ("code_usage.png", "alpha.png", "training.png"):
        assert store.exists(f"tokenize/{png}")


def test_the_tokenizer_trains_in_a_ray_train_worker_and_gives_the_codes_of_training_in_process(demo_run) -> None:
    """Issue 27: the worker trains, a Ray task encodes the catalog with the weights it reported, the driver only
    dispatches; same seed and threads, same codes as training and encoding in this process."""
    import os

    import torch

    from cemg_ray import artifacts
    from cemg_ray.data.split import load_split
    from cemg_ray.tokenize.codes import disambiguate
    from cemg_ray.tokenize.inputs import load_inputs
    from cemg_ray.tokenize.train import fit_tokenizer

    cfg, store = demo_run
    report = store.read_json(artifacts.MANIFEST)["stages"]["tokenize"]["report"]
    assert os.getpid() not in (report["worker"]["pid"], report["training_worker"]["pid"])
    assert not store.exists(artifacts.TOKENIZE_CHECKPOINTS)
    tcfg = cfg.tokenize
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    inputs = load_inputs(store, artifacts.read_items(store).num_rows, split.train_counts, tcfg.use_image,
                         tcfg.use_text, tcfg.use_collab, tcfg.cold_collab_neighbours, collab_source=tcfg.collab_source)
    threads = torch.get_num_threads()
    torch.set_num_threads(int(tcfg.cpus_per_worker))
    try:
        tok, _ = fit_tokenizer(inputs, tcfg)
    finally:
        torch.set_num_threads(threads)
    codes = disambiguate(tok.encode(inputs.image, inputs.text, inputs.collab, inputs.present)[0])
    stored = np.asarray(store.read_parquet(artifacts.CODES).column("codes").to_pylist())
    assert np.array_equal(codes, stored)


def test_planted_agreement_equals_the_pairwise_masks_without_building_them() -> None:
    """The contingency-table count gives what the items x items masks gave (the masks took 40 GB at 100k items)."""
    import numpy as np
    import pytest

    from cemg_ray.tokenize.stage import planted_agreement

    rng = np.random.default_rng(3)
    codes = rng.integers(0, 7, size=(300, 3))
    clusters = rng.integers(0, 5, size=300)
    same_code = codes[:, None, 0] == codes[None, :, 0]
    same_cluster = clusters[:, None] == clusters[None, :]
    off = ~np.eye(300, dtype=bool)
    got = planted_agreement(codes, clusters)
    assert got["p_same_code_given_same_cluster"] == pytest.approx(float(same_code[same_cluster & off].mean()))
    assert got["p_same_code_any_pair"] == pytest.approx(float(same_code[off].mean()))
    singletons = planted_agreement(codes[:3], np.arange(3))
    assert np.isnan(singletons["p_same_code_given_same_cluster"]) and singletons["p_same_code_any_pair"] >= 0


def _borrow_case(num_donors: int = 3000, num_targets: int = 700, dim: int = 16, seed: int = 5):
    rng = np.random.default_rng(seed)
    n = num_donors + num_targets
    content = rng.normal(size=(n, dim)).astype(np.float32)
    content[rng.random(n) < 0.05] = 0.0  # some items without content: the mean-of-every-donor rule
    content /= np.maximum(np.linalg.norm(content, axis=1, keepdims=True), 1e-12)
    collab = rng.normal(size=(n, 8)).astype(np.float32)
    order = rng.permutation(n)
    return content, collab, np.sort(order[:num_donors]), np.sort(order[num_donors:])


def test_borrowed_collab_does_not_depend_on_how_many_targets_go_at_once() -> None:
    """The rows per batch are capped by ``max_elements / donors`` (the 4,096 x donors batch took 8.8 GB at 100k
    items): the same bits from one target at a time, a few, or all in one batch, and the n nearest by cosine."""
    from cemg_ray.tokenize.inputs import borrow_collab

    content, collab, donors, targets = _borrow_case()
    whole = borrow_collab(content, collab, donors, targets, n=10, max_elements=len(targets) * len(donors))
    for max_elements in (len(donors), 7 * len(donors) + 3, 1):  # 1 row, 7 rows, and never below 1 row
        assert np.array_equal(borrow_collab(content, collab, donors, targets, n=10, max_elements=max_elements), whole)
    assert np.array_equal(borrow_collab(content, collab, donors, targets, n=10, batch=64), whole)
    sims = content[targets] @ content[donors].T
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    has = content[targets].any(1)
    np.testing.assert_allclose(whole[has], collab[donors[nearest]].mean(1)[has], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(whole[~has], np.tile(collab[donors].mean(0), (int((~has).sum()), 1)))


def test_borrowed_collab_holds_max_elements_similarities_not_a_batch_x_donors_matrix() -> None:
    """Peak of numpy's allocations (tracemalloc sees them) within the cap, far under 700 x 3,000 x 12 bytes (25 MB)
    that one batch of every target would hold."""
    import tracemalloc

    from cemg_ray.tokenize.inputs import borrow_collab

    content, collab, donors, targets = _borrow_case()
    tracemalloc.start()
    try:
        borrow_collab(content, collab, donors, targets, n=10, max_elements=1 << 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    inputs = content[donors].nbytes + content[targets].nbytes  # the donor copy and the targets' content
    assert peak < inputs + 12 * (1 << 16) + (1 << 20), peak
