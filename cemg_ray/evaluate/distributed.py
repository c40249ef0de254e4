"""Evaluation on a Ray Data actor pool: users sharded over actors that rank with the run's one predictor.

The driver holds the split (histories and targets, as many integers as the data) and reduces; the ranking,
whose cost grows with the users and the catalog, runs in actors with the job's resource requests. Each actor
is an ``api.Run`` over the run directory, the object the export's actors and serving's replicas rank with, and
ranks every asked list in one pass over the users (the decoding policies of one generator share its loaded
weights): one pool start and one model load per split, however many lists are scored. It returns each user's
0-based target rank per list; the driver puts the ranks back in user order and computes the same metrics as the
in-process harness (``harness.summarize``): a user's list does not depend on who shares its batch
(``recommenders.fetch_bucket``), so the figures are equal to the last digit.
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
    from cemg_ray.recommenders import Recommender
    from cemg_ray.store import Store


class RankActor:
    """Ray Data actor: loads each asked model once (``api.Run``; a generator's policies share one load) and
    returns each user's target rank under every list, with the seconds each list took."""

    def __init__(self, cfg_json: dict[str, Any], run_dir: str, models: list[str], k: int):
        from cemg_ray.api import Run
        from cemg_ray.config import JobConfig
        from cemg_ray.recommenders import model_name
        from cemg_ray.store import Store

        cfg = JobConfig.model_validate(cfg_json)
        store = Store(run_dir, cfg.storage.endpoint_url, cfg.storage.region)
        runs: dict[str, Run] = {}
        self.lists: list[tuple[Run, str | None]] = []
        for ref in models:  # each model loaded under its bare name; a reference's policy is a view of it
            name = model_name(ref)
            if name not in runs:
                runs[name] = Run(store, name, cfg=cfg)
            self.lists.append((runs[name], ref.split(":", 1)[1] if ":" in ref else None))
        self.k, self.exclude_seen = k, cfg.evaluate.exclude_seen

    def _top(self, run: Any, policy: str | None, histories: list[np.ndarray]) -> np.ndarray:
        n = len(histories)
        if self.exclude_seen:
            return padded(run.rank_indices(histories, [self.k] * n, [True] * n, policy), self.k)
        rec: Recommender = run.recommender_for(policy)  # the model's own list, history items included
        return np.asarray(rec.recommend(histories, self.k)[0])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        histories = [np.asarray(h, dtype=np.int64) for h in batch["history"]]
        targets = np.asarray(batch["target"])
        out = {"row": np.asarray(batch["row"])}
        for i, (run, policy) in enumerate(self.lists):
            t0 = time.perf_counter()
            out[f"rank{i}"] = target_ranks(self._top(run, policy, histories), targets)
            out[f"seconds{i}"] = np.full(len(targets), (time.perf_counter() - t0) / max(len(targets), 1))
        return out


def evaluate_on_actors(cfg: JobConfig, store: Store, refs: list[str], split: Split, which: str,
                       ks: list[int]) -> dict[str, tuple[dict, str]]:
    """{model: (metrics row, model version)} of every list in ``refs`` on ``which`` split, ranked in one pass on
    ``evaluate.num_actors`` actors. A row's ``users_per_s`` is the users over the actors' seconds on that list."""
    import pyarrow as pa
    import ray.data

    from cemg_ray.raycluster import check_fits, ensure_ray
    from cemg_ray.recommenders import model_version

    ecfg = cfg.evaluate
    refs = list(dict.fromkeys(refs))
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
    # blocks cut here, not by a repartition: a shuffle's tasks would wait for the CPUs the actors hold
    step = -(-table.num_rows // max(4 * ecfg.num_actors, 1))
    blocks = [table.slice(s, step) for s in range(0, table.num_rows, step)] or [table]
    ds = ray.data.from_arrow(blocks).map_batches(
        RankActor, fn_constructor_kwargs={"cfg_json": cfg.model_dump(mode="json"), "run_dir": root, "models": refs,
                                          "k": max(ks)},
        batch_size=ecfg.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=ecfg.num_actors),
        num_cpus=ecfg.cpus_per_actor, num_gpus=ecfg.gpus_per_actor or None)
    ranks = np.full((len(refs), len(targets)), -2, dtype=np.int64)
    seconds = np.zeros(len(refs))
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        for i in range(len(refs)):
            ranks[i, batch["row"]] = batch[f"rank{i}"]
            seconds[i] += float(batch[f"seconds{i}"].sum())
    missing = (ranks == -2).sum(axis=1)
    if missing.any():
        raise RuntimeError(f"evaluate {which}: {int(missing.max())} of {len(targets)} users came back without a "
                           f"rank ({', '.join(r for r, m in zip(refs, missing) if m)})")
    cold = split.cold_items()[targets]
    return {ref: (summarize(ranks[i], cold, ks, which, ecfg.exclude_seen, seconds[i]), model_version(ref, store, cfg))
            for i, ref in enumerate(refs)}
