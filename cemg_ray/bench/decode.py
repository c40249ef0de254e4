"""``cemg-ray bench decode``: constrained beam search against Hugging Face generate, and scaling.

Same model (a random TIGER-size T5: speed does not depend on the weights), same batch, same beam
width. Throughputs are measured in one run and printed as ratios; then users/s of this decoder
as the catalog grows, with the prefix index's build time and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from collections.abc import Callable

    from cemg_ray.generate.itemseq import ItemSeqGenerator
    from cemg_ray.generate.prefix_index import PrefixIndex


def random_catalog(n: int, levels: int, k: int, seed: int = 0) -> np.ndarray:
    """``n`` unique random code sequences of ``levels`` RQ levels + a disambiguation level."""
    rng = np.random.default_rng(seed)
    rq = rng.integers(0, k, size=(n, levels), dtype=np.int64)
    from cemg_ray.tokenize.codes import disambiguate

    return disambiguate(rq)


def _time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _profile(fn: Callable[[], object], rows: int = 8) -> list[dict]:
    """Where one batch of our decoder spends its time: torch.profiler's top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1000, 1),
             "share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in events[:rows]]


def run(items: int, batch: int, beams: int, k: int, levels: int, codebook: int, scale: list[int],
        repeats: int, threads: int | None, profile: bool = False) -> dict:
    from cemg_ray.generate.config import TrainConfig
    from cemg_ray.generate.dataset import history_matrix
    from cemg_ray.generate.decoding import build_index, constrained_beam_search, hf_generate
    from cemg_ray.generate.model import build_model
    from cemg_ray.generate.tokens import TokenLayout

    if threads:
        torch.set_num_threads(threads)
    codes = random_catalog(items, levels, codebook)
    layout = TokenLayout(tuple([codebook] * levels + [int(codes[:, -1].max()) + 1]))
    model = build_model(TrainConfig(dropout=0.0), layout).eval()
    rng = np.random.default_rng(1)
    hist = [rng.integers(0, items, size=20) for _ in range(batch)]
    ids, mask = (torch.as_tensor(a) for a in history_matrix(hist, codes, layout, 20))
    index = build_index(codes, layout)
    ours = _time(lambda: constrained_beam_search(model, ids, mask, index, beams, k), repeats)
    top_ops = _profile(lambda: constrained_beam_search(model, ids, mask, index, beams, k)) if profile else None
    hf_c = _time(lambda: hf_generate(model, ids, mask, index, beams, k, constrained=True), max(1, repeats // 2))
    hf_u = _time(lambda: hf_generate(model, ids, mask, index, beams, k, constrained=False), repeats)
    with torch.inference_mode():  # the encoder pass every path runs once per user: a floor for all three
        encoder = _time(lambda: model.get_encoder()(input_ids=ids, attention_mask=mask), repeats)
    out: dict = {
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on a shared machine skews the figures
        "items": items, "batch": batch, "beams": beams, "k": k, "levels": layout.level_sizes,
        "users_per_s": {"cemg_ray": batch / ours, "hf_constrained": batch / hf_c, "hf_unconstrained": batch / hf_u},
        "seconds_per_batch": {"cemg_ray": ours, "hf_constrained": hf_c, "hf_unconstrained": hf_u,
                              "encoder_only": encoder},
    }
    out["ratios"] = {"vs_hf_constrained": hf_c / ours, "vs_hf_unconstrained": hf_u / ours}
    if top_ops is not None:
        out["profile"] = top_ops
    rows = []
    for n in scale:
        cat = random_catalog(n, levels, codebook, seed=n)
        lay = TokenLayout(tuple([codebook] * levels + [int(cat[:, -1].max()) + 1]))
        t0 = time.perf_counter()
        idx = build_index(cat, lay)
        build_s = time.perf_counter() - t0
        mdl = build_model(TrainConfig(dropout=0.0), lay).eval()
        h = [rng.integers(0, n, size=20) for _ in range(batch)]
        i2, m2 = (torch.as_tensor(a) for a in history_matrix(h, cat, lay, 20))
        sec = _time(lambda: constrained_beam_search(mdl, i2, m2, idx, beams, k), repeats)  # noqa: B023
        rows.append({"items": n, "index_build_s": build_s, "index_mb": idx.nbytes() / 2**20,
                     "users_per_s": batch / sec, "decode_s_per_batch": sec})
    out["scaling"] = rows
    if rows:
        cost = rows[-1]["decode_s_per_batch"] / rows[0]["decode_s_per_batch"]
        out["ratios"]["decode_cost_largest_vs_smallest"] = cost
    return out


def run_items(items: int, batch: int, beams: int, k: int, levels: int, codebook: int, scale: list[int],
              repeats: int, threads: int | None) -> dict:
    """The item-level generator (``train.history: items``): its trie-constrained beam search against
    exact scoring of every catalog item (the reference it must equal: ``tests/generate/test_itemseq.py``),
    the backbone pass alone, and the same catalog scaling table."""
    from cemg_ray.generate.config import TrainConfig
    from cemg_ray.generate.decoding import build_index
    from cemg_ray.generate.item_decoding import beam_search_from_hidden
    from cemg_ray.generate.itemseq import build_item_model
    from cemg_ray.generate.tokens import TokenLayout

    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig(backbone="decoder", history="items", objective="dense", d_model=128, num_layers=2,
                      num_heads=4, d_ff=512, dropout=0.0)
    rng = np.random.default_rng(1)

    def setup(n: int, seed: int) -> tuple[ItemSeqGenerator, PrefixIndex, torch.Tensor, float]:
        cat = random_catalog(n, levels, codebook, seed=seed)
        lay = TokenLayout(tuple([codebook] * levels + [int(cat[:, -1].max()) + 1]))
        t0 = time.perf_counter()
        idx = build_index(cat, lay)
        build_s = time.perf_counter() - t0
        mdl = build_item_model(cfg, lay, cat, 20).eval()
        hist = torch.as_tensor(rng.integers(0, n, size=(batch, 20)))
        return mdl, idx, hist, build_s

    model, index, hist, _ = setup(items, 0)

    def ours() -> None:
        beam_search_from_hidden(model, model.last_hidden(hist), index, beams, k)

    def exhaustive() -> None:
        model.score_items(model.last_hidden(hist)).topk(k, dim=1)

    t_ours = _time(ours, repeats)
    t_exact = _time(exhaustive, max(1, repeats // 2))
    t_backbone = _time(lambda: model.last_hidden(hist), repeats)
    out: dict = {
        "backbone": "items",
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "load_average_1m": round(os.getloadavg()[0], 2), "items": items, "batch": batch, "beams": beams, "k": k,
        "levels": index.layout.level_sizes,
        "users_per_s": {"cemg_ray_items": batch / t_ours, "exhaustive_scoring": batch / t_exact},
        "seconds_per_batch": {"cemg_ray_items": t_ours, "exhaustive_scoring": t_exact, "backbone_only": t_backbone},
        "ratios": {"vs_exhaustive": t_exact / t_ours},
    }
    rows = []
    for n in scale:
        mdl, idx, h, build_s = setup(n, n)
        sec = _time(lambda: beam_search_from_hidden(mdl, mdl.last_hidden(h), idx, beams, k), repeats)  # noqa: B023
        rows.append({"items": n, "index_build_s": build_s, "index_mb": idx.nbytes() / 2**20,
                     "users_per_s": batch / sec, "decode_s_per_batch": sec})
    out["scaling"] = rows
    if rows:
        last, first = rows[-1]["decode_s_per_batch"], rows[0]["decode_s_per_batch"]
        out["ratios"]["decode_cost_largest_vs_smallest"] = last / first
    return out


def _print_items(res: dict) -> None:
    print(f"item-level generator, constrained decoding, {res['items']:,} items, batch {res['batch']}, beams "
          f"{res['beams']}, top-{res['k']}, levels {list(res['levels'])} ({res['machine']}; 1-min load "
          f"{res['load_average_1m']})")
    for name, v in res["users_per_s"].items():
        print(f"  {name:<20}{v:>10.1f} users/s")
    sec = res["seconds_per_batch"]
    print(f"  the backbone pass alone takes {1000 * sec['backbone_only']:.1f} ms of "
          f"{1000 * sec['cemg_ray_items']:.1f} ms per batch; speed-up vs exact scoring of every item: "
          f"{res['ratios']['vs_exhaustive']:.1f}x")
    _print_scaling(res, "")


def _print_scaling(res: dict, target: str) -> None:
    """The catalog scaling table both backbones print."""
    if not res["scaling"]:
        return
    print(f"  {'items':>10} {'build s':>9} {'index MB':>9} {'users/s':>9}")
    for row in res["scaling"]:
        print(f"  {row['items']:>10,} {row['index_build_s']:>9.2f} {row['index_mb']:>9.1f} {row['users_per_s']:>9.1f}")
    print(f"  decode cost at the largest vs the smallest catalog: "
          f"{res['ratios']['decode_cost_largest_vs_smallest']:.2f}x{target}")


def _print(res: dict) -> None:
    print(f"constrained decoding, {res['items']:,} items, batch {res['batch']}, beams {res['beams']}, "
          f"top-{res['k']}, levels {list(res['levels'])} ({res['machine']}; 1-min load {res['load_average_1m']})")
    for name, v in res["users_per_s"].items():
        print(f"  {name:<18}{v:>10.1f} users/s")
    sec = res["seconds_per_batch"]
    print(f"  the encoder alone takes {1000 * sec['encoder_only']:.0f} ms of this decoder's "
          f"{1000 * sec['cemg_ray']:.0f} ms per batch (HF constrained: {1000 * sec['hf_constrained']:.0f} ms)")
    r = res["ratios"]
    print(f"  speed-up vs HF constrained (prefix_allowed_tokens_fn): {r['vs_hf_constrained']:.1f}x  (target >= 10x)")
    print(f"  speed-up vs HF unconstrained beam search:              {r['vs_hf_unconstrained']:.2f}x  (target >= 1x)")
    if res.get("profile"):
        print("  profile of one batch of this decoder (self CPU time):")
        for op in res["profile"]:
            print(f"    {op['op']:<52} {op['self_cpu_ms']:>9.1f} ms {100 * op['share']:>5.1f} %"
                  f"  {op['calls']:>5} calls")
    _print_scaling(res, " (target <= 1.5x)")


def _cmd(args: argparse.Namespace) -> int:
    scale = [] if args.quick else [int(s) for s in args.scale.split(",") if s]
    if args.backbone == "items":
        res = run_items(args.items, args.batch_size, args.beams, args.k, args.levels, args.codebook_size, scale,
                        args.repeats, args.threads)
        print(json.dumps(res, indent=2) if args.json else "", end="\n" if args.json else "")
        if not args.json:
            _print_items(res)
        return 0
    res = run(args.items, args.batch_size, args.beams, args.k, args.levels, args.codebook_size, scale, args.repeats,
              args.threads, args.profile)
    print(json.dumps(res, indent=2) if args.json else "", end="\n" if args.json else "")
    if not args.json:
        _print(res)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="users/s of constrained beam search vs HF generate, and catalog scaling")
    p.add_argument("--items", type=int, default=12101, help="catalog size for the comparison (Beauty: 12,101)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--beams", type=int, default=20)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--levels", type=int, default=4, help="RQ levels (a disambiguation level is added)")
    p.add_argument("--codebook-size", type=int, default=512, help="codes per RQ level (the paper's K = 512)")
    p.add_argument("--scale", default="10000,100000,1000000", help="catalog sizes for the scaling table")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="skip the scaling table")
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's top ops for our decoder")
    p.add_argument("--backbone", choices=["t5", "items"], default="t5",
                   help="t5: the token-layout T5 against HF generate; items: the item-level generator against "
                        "exact scoring of every item")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)
