"""The blend policy's knobs on a run's validation split, every setting in one pass (issue 25).

Takes the policy's own inputs once per batch of validation users (``ItemCEMGRecommender.blend_inputs``: the dense
head's and SASRec's logits, the content similarity over the last ``--window`` history items) and ranks each target
under the policy's own ``blend_scores`` for every combination of the listed weights, cold biases and content
weights, less ``beta * log(1 + training count)`` (a popularity discount the policy does not have, tried here and not
kept). Seen items are removed as the harness removes them. Reads the validation split only: the test split is for
the finished list (``cemg-ray run ... --stages evaluate``).

    .venv/bin/python jobs/experiments/blend_grid.py runs/beauty-sasrec-collab-12ep --cold-biases 0,0.5,1,1.5,2,3
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from cemg_ray.api import open_run
from cemg_ray.data.split import load_split
from cemg_ray.evaluate.metrics import hr_ndcg, standard_errors
from cemg_ray.generate.item_decoding import blend_scores


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--weights", type=floats, default=floats("0,0.2,0.3,0.4,0.5,0.6,0.7,0.8,1"))
    ap.add_argument("--cold-biases", type=floats, default=[0.0])
    ap.add_argument("--content-weights", type=floats, default=[0.0])
    ap.add_argument("--popularity-betas", type=floats, default=[0.0])
    ap.add_argument("--window", type=int, default=3)
    args = ap.parse_args()
    gen = open_run(args.run_dir, model="cemg:dense_all")
    split = load_split(gen.store, gen.cfg.dataset.max_len, gen.cfg.dataset.cold_start_max)
    histories, targets = split.histories("valid")
    cold = split.cold_items()
    cold_ids = torch.as_tensor(np.flatnonzero(cold))
    log_count = torch.log1p(torch.as_tensor(split.train_counts, dtype=torch.float32))
    window = args.window if any(args.content_weights) else 0
    grid = list(itertools.product(args.weights, args.cold_biases, args.content_weights, args.popularity_betas))
    ranks = {g: np.empty(len(targets), np.int64) for g in grid}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(targets), 1024):
            rows = np.arange(start, min(start + 1024, len(targets)))
            hist = [histories[r] for r in rows]
            own = torch.as_tensor(targets[rows])[:, None]
            dense, sasrec, sim = gen.recommender.blend_inputs(hist, window)  # what the policy itself mixes
            seen_r = np.concatenate([np.full(len(h), i) for i, h in enumerate(hist)])
            seen_c = np.concatenate(hist)
            for w, bias, gamma, beta in grid:
                score = blend_scores(dense, sasrec, w, cold_ids, bias, sim, gamma) - beta * log_count
                score[seen_r, seen_c] = -torch.inf
                target = score.gather(1, own)
                rank = (score > target).sum(1)
                ranks[(w, bias, gamma, beta)][rows] = torch.where(torch.isfinite(target[:, 0]), rank, -1).numpy()
    print(f"{len(targets)} validation users ({int(cold[targets].sum())} with a cold-start target), "
          f"{time.perf_counter() - t0:.0f} s; content window {args.window}")
    print("| weight | cold_bias | content_weight | popularity beta | HR@10 | NDCG@10 (± SE) | cold-start HR@10 |\n"
          "|---:|---:|---:|---:|---:|---:|---:|")
    lines = []
    for (w, bias, gamma, beta), r in ranks.items():
        overall, se, on_cold = hr_ndcg(r, [10]), standard_errors(r, [10]), hr_ndcg(r[cold[targets]], [10])
        lines.append((overall["NDCG@10"], f"| {w:g} | {bias:g} | {gamma:g} | {beta:g} | {overall['HR@10']:.4f} | "
                                          f"{overall['NDCG@10']:.4f} ± {se['NDCG@10']:.4f} | {on_cold['HR@10']:.4f} |"))
    for _, line in sorted(lines, reverse=True):
        print(line)


if __name__ == "__main__":
    main()
