"""The blend policy's knobs on a run's validation split, every setting in one pass (issue 25).

Scores all validation users once with the generator's dense head and with SASRec, then ranks each target under
``(1 - w) log p_dense + w log p_sasrec + adjustment`` for a grid of weights and adjustments, where the adjustment is
``cold_bias`` on cold-start items (``--adjust cold``) or ``-beta log(1 + training count)`` on every item
(``--adjust popularity``). Seen items are removed as the harness removes them. Reads the validation split only:
the test split is for the finished list (``cemg-ray run ... --stages evaluate``).

    .venv/bin/python jobs/experiments/blend_grid.py runs/beauty-sasrec-collab-12ep --adjust cold
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cemg_ray.api import open_run
from cemg_ray.data.split import load_split
from cemg_ray.evaluate.metrics import hr_ndcg, standard_errors
from cemg_ray.generate.itemseq import right_padded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--adjust", choices=["cold", "popularity"], default="cold")
    ap.add_argument("--weights", default="0,0.2,0.3,0.4,0.5,0.6,0.7,0.8,1")
    ap.add_argument("--amounts", default=None, help="cold biases or popularity betas (comma-separated)")
    args = ap.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    amounts = [float(a) for a in (args.amounts or ("0,0.5,1,1.5,2,3" if args.adjust == "cold"
                                                    else "0,0.1,0.2,0.3,0.5")).split(",")]
    gen = open_run(args.run_dir, model="cemg:dense_all")
    sasrec = open_run(args.run_dir, model="sasrec").recommender
    split = load_split(gen.store, gen.cfg.dataset.max_len, gen.cfg.dataset.cold_start_max)
    histories, targets = split.histories("valid")
    cold = split.cold_items()
    per_item = torch.as_tensor(cold, dtype=torch.float32) if args.adjust == "cold" else \
        -torch.log1p(torch.as_tensor(split.train_counts, dtype=torch.float32))
    dense = gen.recommender
    ranks = {(w, a): np.empty(len(targets), np.int64) for w in weights for a in amounts}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(targets), 1024):
            rows = np.arange(start, min(start + 1024, len(targets)))
            hist = [histories[r] for r in rows]
            own = torch.as_tensor(targets[rows])[:, None]
            hidden = dense.model.last_hidden(torch.as_tensor(right_padded(hist, dense.max_items)))
            lp_dense = torch.log_softmax(dense.model.dense_logits(hidden, keys=dense._dense_keys()), 1)
            lp_sasrec = torch.log_softmax(sasrec.logits(hist), 1)
            seen_r = np.concatenate([np.full(len(h), i) for i, h in enumerate(hist)])
            seen_c = np.concatenate(hist)
            for w in weights:
                base = (1 - w) * lp_dense + w * lp_sasrec
                base[seen_r, seen_c] = -torch.inf
                for a in amounts:
                    score = base + a * per_item
                    target = score.gather(1, own)
                    rank = (score > target).sum(1)
                    ranks[(w, a)][rows] = torch.where(torch.isfinite(target[:, 0]), rank, -1).numpy()
    print(f"{len(targets)} validation users ({int(cold[targets].sum())} with a cold target), "
          f"{time.perf_counter() - t0:.0f} s; adjustment: {args.adjust}")
    print("| weight | amount | HR@10 | NDCG@10 (± SE) | cold-start HR@10 |\n|---:|---:|---:|---:|---:|")
    rows_out = []
    for (w, a), r in ranks.items():
        overall, se, on_cold = hr_ndcg(r, [10]), standard_errors(r, [10]), hr_ndcg(r[cold[targets]], [10])
        rows_out.append((overall["NDCG@10"], f"| {w:g} | {a:g} | {overall['HR@10']:.4f} | {overall['NDCG@10']:.4f} "
                                             f"± {se['NDCG@10']:.4f} | {on_cold['HR@10']:.4f} |"))
    for _, line in sorted(rows_out, reverse=True):
        print(line)


if __name__ == "__main__":
    main()
