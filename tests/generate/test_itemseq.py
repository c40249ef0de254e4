"""The item-level generator: pooled inputs, dense = per-prefix objective, causality, exact constrained search."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from cemg_ray.generate.config import TrainConfig
from cemg_ray.generate.dataset import dense_windows, item_tensors
from cemg_ray.generate.decoding import build_index
from cemg_ray.generate.item_decoding import (
    beam_search_from_hidden,
    blend_top_k,
    dense_hybrid,
    dense_merge,
    dense_rerank,
    history_content_sim,
    reserve_cold_share,
    subset_index,
    unconstrained_from_hidden,
)
from cemg_ray.generate.itemseq import build_item_model, load_item_model, right_padded, save_item_model
from cemg_ray.generate.tokens import TokenLayout

if TYPE_CHECKING:
    from cemg_ray.generate.itemseq import ItemSeqGenerator

LAYOUT = TokenLayout((4, 3, 2))
CODES = np.array([[0, 0, 0], [0, 0, 1], [0, 2, 0], [1, 1, 0], [2, 0, 0], [2, 1, 0], [3, 2, 0], [3, 2, 1]])


def _cfg(**kw) -> TrainConfig:
    base = dict(backbone="decoder", history="items", objective="dense", d_model=16, num_layers=2, num_heads=2,
                d_ff=32, dropout=0.0)
    return TrainConfig(**{**base, **kw})


def _model(content: bool = False, **kw: object) -> ItemSeqGenerator:
    feats = np.random.default_rng(0).normal(size=(len(CODES), 6)).astype(np.float32) if content else None
    return build_item_model(_cfg(content_input=content, **kw), LAYOUT, CODES, 5, feats).eval()


def test_pooled_item_vector_is_the_mean_of_its_code_embeddings_plus_content() -> None:
    model = _model()
    items = torch.tensor([[3, 0, -1]])
    tokens = torch.as_tensor(LAYOUT.encode_items(CODES[[3, 0]]))
    explicit = model.code_emb.weight[tokens].mean(1)
    got = model.item_vectors(items)
    assert torch.allclose(got[0, :2], explicit)
    assert torch.equal(got[0, 2], torch.zeros(16))  # padding is a zero vector
    with_content = _model(content=True)
    proj = with_content.content_proj(with_content.content_norm(with_content.content[torch.tensor([3, 0])]))
    assert torch.allclose(with_content.item_vectors(items)[0, :2],
                          with_content.code_emb.weight[tokens].mean(1) + proj, atol=1e-6)


def test_dense_objective_equals_the_per_prefix_objective_over_the_same_prefixes() -> None:
    model = _model()
    seqs = [np.array([0, 3, 5, 7]), np.array([2, 6, 1])]
    dense = {k: torch.as_tensor(v).long() for k, v in item_tensors(seqs, 5, "dense").items()}
    prefix = {k: torch.as_tensor(v).long() for k, v in item_tensors(seqs, 5, "prefix").items()}
    assert int((dense["labels"] >= 0).sum()) == int((prefix["labels"] >= 0).sum()) == 5
    n = 5
    dense_sum = model(**dense).loss * n  # both losses are means over supervised positions
    prefix_sum = model(**prefix).loss * n
    by_hand = sum(model(items=prefix["items"][r:r + 1], labels=prefix["labels"][r:r + 1]).loss
                  for r in range(len(prefix["items"])))
    assert dense_sum.item() == pytest.approx(prefix_sum.item(), rel=1e-5)
    assert dense_sum.item() == pytest.approx(by_hand.item(), rel=1e-5)


@pytest.mark.parametrize("content, dense_weight", [(False, 0.0), (True, 1.0)])
def test_one_batch_gives_every_trainable_parameter_a_gradient(content: bool, dense_weight: float) -> None:
    """What DDP with several workers requires (it refuses parameters without a gradient): the backbone's token
    table, never read since items enter as inputs_embeds, is frozen; everything else learns from every batch."""
    model = _model(content=content, dense_weight=dense_weight).train()
    batch = {k: torch.as_tensor(v).long() for k, v in item_tensors([np.array([0, 3, 5, 7]), np.array([2, 6, 1])],
                                                                     5, "dense").items()}
    model(**batch).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert not model.backbone.get_input_embeddings().weight.requires_grad


def test_windows_cover_every_pair_once() -> None:
    seq = np.arange(12)
    windows = dense_windows([seq], max_items=4)
    targets = sorted(int(t) for w in windows for t in w[1:])
    assert targets == list(range(1, 12))
    assert all(len(w) <= 5 for w in windows)


def test_no_position_sees_later_items() -> None:
    model = _model(content=True)
    a = torch.tensor([[0, 3, 5, 7, 2]])
    b = torch.tensor([[0, 3, 5, 1, 6]])
    ha, hb = model.encode(a), model.encode(b)
    assert torch.allclose(ha[0, :3], hb[0, :3], atol=1e-6)
    assert not torch.allclose(ha[0, 3], hb[0, 3])


def test_constrained_search_equals_exhaustive_scoring_and_returns_only_items() -> None:
    model = _model(content=True)
    index = build_index(CODES, LAYOUT)
    hidden = model.last_hidden(torch.as_tensor(right_padded([np.array([0, 3]), np.array([5]), np.array([7, 6, 1])], 5)))
    exact = model.score_items(hidden)  # [B, N]
    assert (exact.exp().sum(1) <= 1 + 1e-5).all()  # the catalog is part of all code sequences
    items, scores = beam_search_from_hidden(model, hidden, index, num_beams=len(CODES), k=len(CODES))
    order = exact.argsort(dim=1, descending=True)
    assert torch.equal(items, order)
    assert torch.allclose(scores, exact.gather(1, order), atol=1e-5)
    few, _ = beam_search_from_hidden(model, hidden, index, num_beams=3, k=3)
    assert ((few >= 0) & (few < len(CODES))).all()
    free, free_scores = unconstrained_from_hidden(model, hidden, index, num_beams=12, k=3)
    assert ((free == -1) | ((free >= 0) & (free < len(CODES)))).all()


def test_cold_share_reserves_slots_for_cold_items() -> None:
    model = _model()
    index = build_index(CODES, LAYOUT)
    cold = np.array([1, 6])
    is_cold = torch.zeros(len(CODES), dtype=torch.bool)
    is_cold[torch.as_tensor(cold)] = True
    hidden = model.last_hidden(torch.tensor([[0, 3], [5, -1]]))
    items, scores = beam_search_from_hidden(model, hidden, index, 8, 4)
    sub = subset_index(CODES, cold, index)
    c_items, c_scores = beam_search_from_hidden(model, hidden, sub, 8, 2)
    assert set(c_items.flatten().tolist()) <= set(cold.tolist())
    out, _ = reserve_cold_share(items, scores, c_items, c_scores, is_cold, 0.5)
    for row, ranked, cands in zip(out.tolist(), items.tolist(), c_items.tolist()):
        assert len(set(row)) == 4
        assert is_cold[row[1]] and is_cold[row[3]]  # every 2nd slot is a cold item: the share holds at k=2 and 4
        assert row[1] == cands[0] or cands[0] == row[0]  # the best cold candidate takes the first cold slot
        others = [i for i in ranked if i not in (row[1], row[3])]
        assert [row[0], row[2]] == others[:2]  # the other slots keep the model's order


def test_dense_head_loss_is_catalog_softmax_of_cosine_over_temperature() -> None:
    model = _model(content=True, dense_weight=0.5, dense_temperature=0.1)
    items = torch.tensor([[0, 3, 5, -1]])
    labels = torch.tensor([[3, 5, 7, -1]])
    hidden = model.encode(items)[0, :3]
    keys = model.item_vectors(torch.arange(len(CODES)))
    q = model.dense_proj(hidden)
    cos = (q[:, None, :] * keys[None]).sum(-1) / (q.norm(dim=-1)[:, None] * keys.norm(dim=-1)[None])
    assert torch.allclose(model.dense_logits(hidden), cos / 0.1, atol=1e-5)
    explicit = -torch.log_softmax(cos / 0.1, -1)[torch.arange(3), labels[0, :3]].mean()
    total = model.code_loss(hidden, labels[0, :3]) + 0.5 * explicit
    assert torch.allclose(model(items, labels).loss, total, atol=1e-5)
    assert not _model().has_dense_head and _model().dense_proj is None


def test_dot_head_scores_by_the_unnormalised_product_and_code_weight_scales_the_code_loss(tmp_path) -> None:
    model = _model(content=True, dense_weight=0.5, dense_score="dot", code_weight=0.25)
    items = torch.tensor([[0, 3, 5, -1]])
    labels = torch.tensor([[3, 5, 7, -1]])
    hidden = model.encode(items)[0, :3]
    dot = model.dense_proj(hidden) @ model.item_vectors(torch.arange(len(CODES))).T
    assert torch.allclose(model.dense_logits(hidden), dot, atol=1e-5)
    explicit = -torch.log_softmax(dot, -1)[torch.arange(3), labels[0, :3]].mean()
    total = 0.25 * model.code_loss(hidden, labels[0, :3]) + 0.5 * explicit
    assert torch.allclose(model(items, labels).loss, total, atol=1e-5)
    dense_only = _model(dense_weight=1.0, code_weight=0.0)
    hidden = dense_only.encode(items)[0, :3]
    assert torch.allclose(dense_only(items, labels).loss, dense_only.dense_loss(hidden, labels[0, :3]), atol=1e-6)
    save_item_model(model, tmp_path)
    back = load_item_model(tmp_path)
    assert back.dense_score == "dot"
    x = torch.tensor([[0, 3, 5]])
    assert torch.allclose(model.dense_logits(model.last_hidden(x)), back.dense_logits(back.last_hidden(x)), atol=1e-5)
    with pytest.raises(ValueError, match="train.code_weight"):
        _cfg(code_weight=0.0)


def test_input_dropout_is_its_own_knob() -> None:
    assert _model(dropout=0.3).input_dropout.p == 0.3
    assert _model(dropout=0.3, input_dropout=0.0).input_dropout.p == 0.0


def test_sampled_dense_loss_is_the_softmax_over_the_targets_plus_the_drawn_items() -> None:
    model = _model(dense_weight=1.0, dense_negatives=3)
    hidden = model.encode(torch.tensor([[0, 3, 5]]))[0]
    targets = torch.tensor([3, 5, 7])
    torch.manual_seed(7)
    got = model.dense_loss(hidden, targets)
    torch.manual_seed(7)
    pool = torch.unique(torch.cat([targets, torch.randint(0, len(CODES), (3,))]))
    logits = model.dense_logits(hidden)[:, pool]
    cols = torch.tensor([pool.tolist().index(t) for t in targets.tolist()])
    assert torch.allclose(got, F.cross_entropy(logits, cols), atol=1e-6)
    full = _model(dense_weight=1.0, dense_negatives=len(CODES))  # as many as the catalog: the full softmax
    h = full.encode(torch.tensor([[0, 3, 5]]))[0]
    assert torch.allclose(full.dense_loss(h, targets), F.cross_entropy(full.dense_logits(h), targets))


def test_dense_head_sees_no_later_items() -> None:
    model = _model(dense_weight=1.0)
    a = model.dense_logits(model.encode(torch.tensor([[0, 3, 5, 7]]))[0, :2])
    b = model.dense_logits(model.encode(torch.tensor([[0, 3, 2, 1]]))[0, :2])
    assert torch.allclose(a, b, atol=1e-6)


def _dense_case(beams: int, with_log_probs: bool = False) -> tuple:
    """(model, states, beam items, cold items, dense logits[, beam log-probs]) for the dense decoding tests."""
    model = _model(content=True, dense_weight=1.0)
    hidden = model.last_hidden(torch.tensor([[0, 3], [5, -1]]))
    found, log_probs = beam_search_from_hidden(model, hidden, build_index(CODES, LAYOUT), beams, beams)
    with torch.no_grad():
        logits = model.dense_logits(hidden)
    case = (model, hidden, found, torch.tensor([1, 6]), logits)
    return (*case, log_probs) if with_log_probs else case


def test_dense_rerank_ranks_beam_candidates_plus_extra_items_by_the_dense_head() -> None:
    model, hidden, beams, cold, logits = _dense_case(3)
    items, scores = dense_rerank(model, hidden, beams, cold, 4)
    for b in range(2):
        pool = set(beams[b].tolist()) | {1, 6}
        expected = sorted(pool, key=lambda i: -float(logits[b, i]))[:4]
        assert items[b].tolist() == expected
        assert torch.allclose(scores[b], logits[b, items[b].clone()])
    with torch.no_grad():
        cached, _ = dense_rerank(model, hidden, beams, cold, 4, keys=model.dense_keys())
    assert torch.equal(cached, items)  # precomputed catalog vectors give the same ranking
    raised, raised_scores = dense_rerank(model, hidden, beams, cold, 4, extra_bias=100.0)
    assert set(raised[:, :2].flatten().tolist()) == {1, 6}  # raised far enough, the extra items lead every row
    for b in range(2):
        for j in range(2):
            assert torch.isclose(raised_scores[b, j], logits[b, int(raised[b, j])] + 100.0)
    full, _ = dense_rerank(model, hidden, None, None, len(CODES) + 2)  # every item, then padding
    assert sorted(full[0, :len(CODES)].tolist()) == list(range(len(CODES)))
    assert full[0, len(CODES):].tolist() == [-1, -1]
    with pytest.raises(ValueError, match="dense head"):
        _model().dense_logits(hidden)


def test_dense_merge_keeps_the_beam_order_and_lets_cold_items_in_on_their_dense_score() -> None:
    model, hidden, beams, cold, logits = _dense_case(4)
    for bias in (-100.0, 0.0, 100.0):
        items, scores = dense_merge(model, hidden, beams, cold, 5, cold_bias=bias)
        for b in range(2):
            row = [i for i in items[b].tolist() if i >= 0]
            assert len(row) == len(set(row))
            warm = [i for i in row if i in beams[b].tolist()]
            assert warm == beams[b].tolist()[:len(warm)]  # beam items keep the beam's order
            extra = [i for i in row if i not in beams[b].tolist()]
            assert set(extra) <= {1, 6}
            real = [i for i in beams[b].tolist() if i >= 0]
            if bias == -100.0:
                assert row[:len(real)] == real  # pushed down, cold items only fill what the beam leaves empty
            if bias == 100.0:
                assert row[:len(extra)] == extra and len(extra) == len({1, 6} - set(beams[b].tolist()))
            for p, i in enumerate(row):  # every listed score is the item's dense logit (+ bias for merged cold)
                expected = float(logits[b, i]) + (bias if i in extra else 0.0)
                assert abs(float(scores[b, p]) - expected) < 1e-4


def test_dense_hybrid_ranks_the_pool_by_the_mixture_of_both_heads_probabilities() -> None:
    model, hidden, beams, cold, logits, log_probs = _dense_case(3, with_log_probs=True)
    p_dense = torch.softmax(logits, dim=1)
    for w, bias in ((0.8, 0.0), (0.5, 2.0), (0.3, -1.0)):
        items, scores = dense_hybrid(model, hidden, beams, log_probs, cold, 4, w, bias)
        for b in range(2):
            mix = {}  # the mixture written out in probabilities, item by item
            for i in set(beams[b].tolist()) | {1, 6}:
                in_beam = i in beams[b].tolist()
                p_beam = float(log_probs[b, beams[b].tolist().index(i)].exp()) if in_beam else 0.0
                mix[i] = w * p_beam + (1 - w) * float(p_dense[b, i]) * (np.exp(bias) if i in (1, 6) else 1.0)
            expected = sorted(mix, key=lambda i: -mix[i])[:4]
            assert items[b].tolist() == expected
            assert np.allclose(scores[b].exp().numpy(), [mix[i] for i in expected], rtol=1e-4)
    near_beam, _ = dense_hybrid(model, hidden, beams, log_probs, cold, 3, 1 - 1e-12)
    assert torch.equal(near_beam, beams)  # the code head's weight near 1: the beam's own list
    cold_first, _ = dense_hybrid(model, hidden, beams, log_probs, cold, 3, 0.5, cold_bias=100.0)
    assert set(cold_first[:, :2].flatten().tolist()) == {1, 6}  # raised far enough, cold items lead
    with pytest.raises(ValueError, match="beam_weight"):
        dense_hybrid(model, hidden, beams, log_probs, cold, 3, 1.0)


def test_save_and_load_round_trip(tmp_path) -> None:
    model = _model(content=True)
    save_item_model(model, tmp_path)
    loaded = load_item_model(tmp_path)
    x = torch.tensor([[0, 3, 5]])
    assert torch.allclose(model.last_hidden(x), loaded.last_hidden(x), atol=1e-6)
    assert not loaded.has_dense_head
    dense = _model(content=True, dense_weight=0.3, dense_temperature=0.2)
    save_item_model(dense, tmp_path / "dense")
    back = load_item_model(tmp_path / "dense")
    assert back.dense_temperature == 0.2 and back.dense_weight == 0.3
    h = dense.last_hidden(x)
    assert torch.allclose(dense.dense_logits(h), back.dense_logits(back.last_hidden(x)), atol=1e-5)
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))


def test_lora_backbone_trains_fewer_parameters_and_merges_on_save(tmp_path) -> None:
    model = _model(lora=True)
    info = model.param_count()
    assert info["trainable"] < info["parameters"]
    save_item_model(model, tmp_path)
    assert load_item_model(tmp_path).param_count()["parameters"] < info["parameters"]


def test_layout_options_are_checked() -> None:
    with pytest.raises(ValueError, match="train.backbone: decoder"):
        TrainConfig(history="items")
    with pytest.raises(ValueError, match="train.history: items"):
        TrainConfig(objective="dense")


def test_training_and_validation_tensors_do_not_depend_on_the_test_items() -> None:
    from cemg_ray.data.split import leave_one_out

    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 8, size=int(n)) for n in rng.integers(3, 12, size=20)]
    other = [np.concatenate([s[:-1], [(s[-1] + 1) % 8]]) for s in seqs]  # every test item changed
    built = []
    for sequences in (seqs, other):
        split = leave_one_out(sequences, 8, max_len=5)
        built.append({**item_tensors(split.train, 5, "dense"),
                      **{f"valid_{k}": v for k, v in item_tensors(split.train, 5, "prefix").items()},
                      "valid_items": right_padded(split.valid_history, 5), "valid_target": split.valid_target})
    for key in built[0]:
        assert np.array_equal(built[0][key], built[1][key]), key


def test_budget_schedule_warms_up_in_steps_and_decays_to_zero_with_the_clock() -> None:
    from cemg_ray.generate.train import budget_schedule

    clock = {"train_s": 0.0}
    f = budget_schedule(warmup_steps=10, budget_s=100.0, clock=clock)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    clock["train_s"] = 50.0
    assert f(100) == pytest.approx(0.5)
    clock["train_s"] = 150.0
    assert f(100) == pytest.approx(0.0)


COUNTS = np.array([9, 0, 7, 3, 12, 6, 1, 5])  # training interactions per item of CODES


def _children_by_hand(prefix: tuple[int, ...]) -> list[int]:
    """The codes that follow ``prefix`` in some item of CODES (what the trie allows), by a plain scan."""
    return sorted({int(c[len(prefix)]) for c in CODES if tuple(c[:len(prefix)]) == prefix})


def test_constrained_loss_is_the_cross_entropy_over_the_valid_children_by_hand() -> None:
    model = _model(constrained_loss=True)
    free = _model()  # same seed, same weights: its logits are the unmasked ones
    free.load_state_dict(model.state_dict())
    hidden = torch.randn(len(CODES), 16)
    targets = torch.arange(len(CODES))
    expected = torch.zeros(())
    tokens = model.item_tokens[targets]
    for lvl in range(len(model.ranges)):
        logits = free.level_logits(hidden, tokens, lvl)
        per_row = []
        for r, item in enumerate(targets.tolist()):
            allowed = _children_by_hand(tuple(CODES[item][:lvl]))
            z = logits[r, allowed]
            per_row.append(-(z[allowed.index(int(CODES[item][lvl]))] - torch.logsumexp(z, 0)))
        expected = expected + torch.stack(per_row).mean()
    torch.testing.assert_close(model.code_loss(hidden, targets), expected, atol=1e-5, rtol=1e-5)
    # the unconstrained loss spreads mass over codes no item continues with: it is larger
    assert free.code_loss(hidden, targets) > model.code_loss(hidden, targets)


def test_constrained_scores_are_a_distribution_over_the_catalog_and_the_beam_is_exact() -> None:
    model = _model(content=True, constrained_loss=True)
    index = build_index(CODES, LAYOUT)
    hidden = model.last_hidden(torch.as_tensor(right_padded([np.array([0, 3]), np.array([7, 6, 1])], 5)))
    exact = model.score_items(hidden)
    torch.testing.assert_close(exact.exp().sum(1), torch.ones(2), atol=1e-5, rtol=1e-5)
    items, scores = beam_search_from_hidden(model, hidden, index, num_beams=len(CODES), k=len(CODES))
    assert torch.equal(items, exact.argsort(dim=1, descending=True))
    torch.testing.assert_close(scores, exact.gather(1, items), atol=1e-5, rtol=1e-5)


def test_item_ids_reach_warm_items_only() -> None:
    model = build_item_model(_cfg(item_ids=True, item_id_min_count=6), LAYOUT, CODES, 5, None, COUNTS).eval()
    base = build_item_model(_cfg(), LAYOUT, CODES, 5, None).eval()
    base.load_state_dict(model.state_dict(), strict=False)
    items = torch.arange(len(CODES))
    diff = (model.item_vectors(items) - base.item_vectors(items)).abs().sum(1)
    warm = torch.as_tensor(COUNTS >= 6)
    assert (diff[warm] > 0).all() and (diff[~warm] == 0).all()
    # a cold item's ID row gets no gradient: its vector is codes (and content) only
    model.train()
    out = model(torch.tensor([[0, 1, 3, 6]]), torch.tensor([[1, 3, 6, 7]]))
    out.loss.backward()
    grad = model.id_emb.weight.grad.abs().sum(1)
    assert (grad[~warm] == 0).all() and grad[0] > 0
    with pytest.raises(ValueError, match="interaction count"):
        build_item_model(_cfg(item_ids=True), LAYOUT, CODES, 5)


def test_item_ids_and_constraint_survive_save_and_load(tmp_path) -> None:
    cfg = _cfg(item_ids=True, constrained_loss=True, dense_weight=0.5)
    model = build_item_model(cfg, LAYOUT, CODES, 5, None, COUNTS).eval()
    save_item_model(model, tmp_path)
    back = load_item_model(tmp_path)
    x = torch.tensor([[0, 3, 5]])
    h = model.last_hidden(x)
    assert back.trie is not None and torch.equal(back.id_mask, model.id_mask)
    torch.testing.assert_close(model.score_items(h), back.score_items(back.last_hidden(x)))
    torch.testing.assert_close(model.dense_logits(h), back.dense_logits(back.last_hidden(x)))


def test_item_ids_and_constraint_need_the_items_layout() -> None:
    for flag in ("item_ids", "constrained_loss"):
        with pytest.raises(ValueError, match=flag):
            TrainConfig(**{flag: True})


def test_dense_validation_ranks_the_catalog_without_the_history_and_matches_the_metric_by_hand() -> None:
    from cemg_ray.generate.item_family import ItemFamily, dense_top_k
    from cemg_ray.generate.train import validate

    model = _model(content=True, dense_weight=1.0)
    histories = torch.tensor([[0, 3, 5, -1], [2, -1, -1, -1]])
    top = dense_top_k(model, histories, 5)
    scores = model.dense_logits(model.last_hidden(histories))
    for row, history in enumerate(histories.tolist()):
        unseen = [i for i in scores[row].argsort(descending=True).tolist() if i not in history]
        assert top[row].tolist() == unseen[:5]
    targets = np.array([top[0, 1], top[1, 0]])
    data = {"items": histories.numpy(), "target_item": targets}
    nd, hr = validate(model, ItemFamily(), data, build_index(CODES, LAYOUT), beams=4, valid_list="dense")
    assert hr == 2.0 and nd == pytest.approx(1 / np.log2(3) + 1.0)
    with pytest.raises(ValueError, match="train.valid_list"):
        _cfg(valid_list="dense")


def test_blend_ranks_by_the_weighted_log_probabilities_of_both_models_written_out_by_hand() -> None:
    gen = torch.Generator().manual_seed(3)
    dense, sasrec = torch.randn(3, 8, generator=gen) * 3, torch.randn(3, 8, generator=gen) * 3
    cold = torch.tensor([1, 6])
    for w, bias in ((0.3, 0.0), (0.5, 1.5), (0.8, -2.0)):
        items, scores = blend_top_k(dense, sasrec, w, cold, bias, 5)
        for b in range(3):
            p_d, p_s = torch.softmax(dense[b], 0).tolist(), torch.softmax(sasrec[b], 0).tolist()
            by_hand = {i: (1 - w) * np.log(p_d[i]) + w * np.log(p_s[i]) + (bias if i in (1, 6) else 0.0)
                       for i in range(8)}
            expected = sorted(by_hand, key=lambda i: -by_hand[i])[:5]
            assert items[b].tolist() == expected
            assert np.allclose(scores[b].numpy(), [by_hand[i] for i in expected], atol=1e-5)
    # the ends of the weight are each model's own ranking
    assert torch.equal(blend_top_k(dense, sasrec, 0.0, cold, 0.0, 8)[0], dense.topk(8).indices)
    assert torch.equal(blend_top_k(dense, sasrec, 1.0, cold, 0.0, 8)[0], sasrec.topk(8).indices)
    with pytest.raises(ValueError, match="different catalogs"):
        blend_top_k(dense, sasrec[:, :7], 0.3, cold, 0.0, 5)


def test_the_blends_content_term_is_the_cosine_to_the_mean_of_the_last_items() -> None:
    rng = np.random.default_rng(4)
    content = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(8, 5)).astype(np.float32)), dim=1)
    histories = [np.array([0, 1, 2, 3]), np.array([5]), np.array([], dtype=np.int64)]
    sim = history_content_sim(content, histories, window=3)
    query = content[[1, 2, 3]].mean(0)
    np.testing.assert_allclose(sim[0].numpy(), (content @ query / query.norm()).numpy(), atol=1e-5)
    np.testing.assert_allclose(sim[1].numpy(), (content @ content[5]).numpy(), atol=1e-5)
    assert (sim[2] == 0).all()  # no history: no say
    dense, sasrec = torch.zeros(3, 8), torch.zeros(3, 8)  # both models indifferent: content alone ranks
    items, _ = blend_top_k(dense, sasrec, 0.5, None, 0.0, 8, sim, 2.0)
    assert items[1].tolist() == sim[1].argsort(descending=True).tolist() and items[1, 0] == 5
