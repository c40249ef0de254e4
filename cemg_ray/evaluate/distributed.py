"""Evaluation on a Ray Data actor pool: users sharded over actors that rank with the run's one predictor.

The driver holds the split (histories and targets, as many integers as the data) and reduces; the ranking,
whose cost grows with the users and the catalog, runs in actors with the job's resource requests. Each actor
is an ``api.Run`` over the run directory, the object the export's actors and serving's replicas rank with, and
returns each user's 0-based target rank; the driver puts the ranks back in user order and computes the same
metrics as the in-process harness (``harness.summarize``): a user's list does not depend on who shares its
batch (``recommenders.fetch_bucket``), so the figures are equal to the last digit.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from cemg_ray.evaluate.harness import padded, summarize
from cemg_ray.evaluate.metrics import target_ranks

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig
    from cemg_ray.data.split import Split
    from cemg_ray.store import Store


class RankActor:
    """Ray Data actor: loads the model once (``api.Run``) and returns each user's target rank."""

    def __init__(self, cfg_json: dict[str, Any], run_dir: str, model: str, k: int):
        from cemg_ray.api import Run
        from cemg_ray.config import JobConfig
        from cemg_ray.store import Store

        cfg = JobConfig.model_validate(cfg_json)
        self.run = Run(Store(run_dir, cfg.storage.endpoint_url, cfg.storage.region), model, cfg=cfg)
        self.k, self.exclude_seen = k, cfg.evaluate.exclude_seen

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        histories = [np.asarray(h, dtype=np.int64) for h in batch["history"]]
        n = len(histories)
        if self.exclude_seen:
            items = padded(self.run.rank_indices(histories, [self.k] * n, [True] * n), self.k)
        else:  # the model's own list, history items included (the harness's exclude_seen: false)
            items = np.asarray(self.run.recommender.recommend(histories, self.k)[0])
        return {"row": np.asarray(batch["row"]), "rank": target_ranks(items, np.asarray(batch["target"]))}


def evaluate_on_actors(cfg: JobConfig, store: Store, ref: str, split: Split, which: str,
                       ks: list[int]) -> tuple[dict, str]:
    """(metrics row, model version) of model ``ref`` on ``which`` split, ranked on ``evaluate.num_actors`` actors."""
    import pyarrow as pa
    import ray.data

    from cemg_ray.raycluster import check_fits, ensure_ray
    from cemg_ray.recommenders import model_version

    ecfg = cfg.evaluate
    ensure_ray(cfg.ray)
    check_fits("evaluate", {"CPU": ecfg.cpus_per_actor, "GPU": ecfg.gpus_per_actor}, what="ranking actor")
    histories, targets = split.histories(which)
    ks = sorted(ks)
    # users in order of history length, as the harness batches them: blocks of similar lengths carry little padding
    order = np.argsort([len(h) for h in histories], kind="stable")
    table = pa.table({"row": pa.array(order, pa.int64()),
                      "history": pa.array([np.asarray(histories[r], dtype=np.int64) for r in order],
                                          pa.list_(pa.int64())),
                      "target": pa.array(np.asarray(targets)[order], pa.int64())})
    root = os.path.abspath(store.root_uri) if store.is_local else store.root_uri
    t0 = time.perf_counter()
    # blocks cut here, not by a repartition: a shuffle's tasks would wait for the CPUs the actors hold
    step = -(-table.num_rows // max(4 * ecfg.num_actors, 1))
    blocks = [table.slice(s, step) for s in range(0, table.num_rows, step)] or [table]
    ds = ray.data.from_arrow(blocks).map_batches(
        RankActor, fn_constructor_kwargs={"cfg_json": cfg.model_dump(mode="json"), "run_dir": root, "model": ref,
                                          "k": max(ks)},
        batch_size=ecfg.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=ecfg.num_actors),
        num_cpus=ecfg.cpus_per_actor, num_gpus=ecfg.gpus_per_actor or None)
    ranks = np.full(len(targets), -2, dtype=np.int64)
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        ranks[batch["row"]] = batch["rank"]
    if (ranks == -2).any():
        raise RuntimeError(f"evaluate {ref}: {(ranks == -2).sum()} of {len(ranks)} users came back without a rank")
    result = summarize(ranks, split.cold_items()[targets], ks, which, ecfg.exclude_seen, time.perf_counter() - t0)
    return result, model_version(ref, store, cfg)
