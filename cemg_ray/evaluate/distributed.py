"""Evaluation on a Ray Data actor pool: users sharded over actors that rank with the run's one predictor.

The driver holds the split (histories and targets, as many integers as the data) and reduces; the ranking,
whose cost grows with the users and the catalog, runs in actors with the job's resource requests. Each actor
is an ``api.Run`` over the run directory, the object the export's actors and serving's replicas rank with, and
ranks every asked list in one pass over the users (the decoding policies of one generator share its loaded
weights): one pool start and one model load for all the lists of the validation and the test split the stage
knows it needs. It returns each user's 0-based target rank per list; the driver puts the ranks back in user
order and computes the same metrics as the in-process harness (``harness.summarize``): a user's list does not
depend on who shares its batch (``recommenders.fetch_bucket``), so the figures are equal to the last digit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cemg_ray.evaluate.harness import padded, summarize
from cemg_ray.evaluate.metrics import target_ranks

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig
    from cemg_ray.data.split import Split
    from cemg_ray.store import Store

NOT_ASKED = -3  # a rank column's value on rows of another part: never a rank (-1 is "not in the top k")


@dataclass(frozen=True)
class Ask:
    """Lists to score on one split at some cutoffs: one part of a pass (selection on validation, the models on
    the evaluation split)."""

    split: str
    models: list[str]
    ks: list[int]
    where: str = "evaluate.models"  # the config key that named the lists, for messages


class RankActor:
    """Ray Data actor: loads each asked model once (``api.Run``; a generator's policies share one load) and
    returns each user's target rank under every list of the user's part, with the seconds each list took."""

    def __init__(self, cfg_json: dict[str, Any], run_dir: str, parts: list[tuple[list[str], int]]):
        from cemg_ray.api import Run
        from cemg_ray.config import JobConfig
        from cemg_ray.recommenders import model_name
        from cemg_ray.store import Store

        cfg = JobConfig.model_validate(cfg_json)
        store = Store(run_dir, cfg.storage.endpoint_url, cfg.storage.region)
        runs: dict[str, Run] = {}

        def view(ref: str) -> tuple[Run, str | None]:  # each model under its bare name, a policy a view of it
            name = model_name(ref)
            if name not in runs:
                runs[name] = Run(store, name, cfg=cfg)
            return runs[name], (ref.split(":", 1)[1] if ":" in ref else None)

        self.parts = [([view(ref) for ref in models], k) for models, k in parts]
        self.exclude_seen = cfg.evaluate.exclude_seen

    def _top(self, run: Any, policy: str | None, histories: list[np.ndarray], k: int) -> np.ndarray:
        n = len(histories)
        if self.exclude_seen:
            return padded(run.rank_indices(histories, [k] * n, [True] * n, policy), k)
        return np.asarray(run.recommender_for(policy).recommend(histories, k)[0])  # history items included

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        part_of = np.asarray(batch["part"])
        targets = np.asarray(batch["target"])
        out = {"part": part_of, "row": np.asarray(batch["row"])}
        for p, (lists, k) in enumerate(self.parts):
            mine = np.flatnonzero(part_of == p)
            histories = [np.asarray(batch["history"][r], dtype=np.int64) for r in mine]
            for i, (run, policy) in enumerate(lists):
                ranks = np.full(len(targets), NOT_ASKED, dtype=np.int64)
                seconds = np.zeros(len(targets))
                if len(mine):
                    t0 = time.perf_counter()
                    ranks[mine] = target_ranks(self._top(run, policy, histories, k), targets[mine])
                    seconds[mine] = (time.perf_counter() - t0) / len(mine)
                out[f"rank{p}_{i}"], out[f"seconds{p}_{i}"] = ranks, seconds
        return out


def evaluate_on_actors(cfg: JobConfig, store: Store, asks: list[Ask],
                       split: Split) -> list[dict[str, tuple[dict, str]]]:
    """For each ask, {model: (metrics row, model version)}: every list of every ask ranked in one pass on up to
    ``evaluate.num_actors`` actors (one to start: a cluster with room for fewer still runs, on fewer). A row's
    ``users_per_s`` is the users over the actors' seconds on that list."""
    import pyarrow as pa
    import ray.data

    from cemg_ray.raycluster import check_fits, ensure_ray
    from cemg_ray.recommenders import model_version

    ecfg = cfg.evaluate
    asks = [Ask(a.split, list(dict.fromkeys(a.models)), sorted(a.ks), a.where) for a in asks]
    ensure_ray(cfg.ray)
    check_fits("evaluate", {"CPU": ecfg.cpus_per_actor, "GPU": ecfg.gpus_per_actor}, what="ranking actor")
    columns: dict[str, list] = {"part": [], "row": [], "history": [], "target": []}
    sizes = []
    for p, ask in enumerate(asks):
        histories, targets = split.histories(ask.split)
        sizes.append(len(targets))
        # users in order of history length, as the harness batches them: blocks of similar lengths carry little padding
        order = np.argsort([len(h) for h in histories], kind="stable")
        columns["part"].append(np.full(len(order), p, dtype=np.int64))
        columns["row"].append(order.astype(np.int64))
        columns["history"].extend(np.asarray(histories[r], dtype=np.int64) for r in order)
        columns["target"].append(np.asarray(targets, dtype=np.int64)[order])
    table = pa.table({"part": np.concatenate(columns["part"]), "row": np.concatenate(columns["row"]),
                      "history": pa.array(columns["history"], pa.list_(pa.int64())),
                      "target": np.concatenate(columns["target"])})
    root = os.path.abspath(store.root_uri) if store.is_local else store.root_uri
    # blocks cut here, not by a repartition: a shuffle's tasks would wait for the CPUs the actors hold
    step = -(-table.num_rows // max(4 * ecfg.num_actors, 1))
    blocks = [table.slice(s, step) for s in range(0, table.num_rows, step)] or [table]
    parts = [(ask.models, max(ask.ks)) for ask in asks]
    pool = ray.data.ActorPoolStrategy(min_size=1, max_size=ecfg.num_actors)  # room for fewer: runs on fewer
    ds = ray.data.from_arrow(blocks).map_batches(
        RankActor, fn_constructor_kwargs={"cfg_json": cfg.model_dump(mode="json"), "run_dir": root, "parts": parts},
        batch_size=ecfg.batch_size, batch_format="numpy", compute=pool, num_cpus=ecfg.cpus_per_actor,
        num_gpus=ecfg.gpus_per_actor or None)
    ranks = [np.full((len(ask.models), n), -2, dtype=np.int64) for ask, n in zip(asks, sizes)]
    seconds = [np.zeros(len(ask.models)) for ask in asks]
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        for p, ask in enumerate(asks):
            mine = batch["part"] == p
            rows = batch["row"][mine]
            for i in range(len(ask.models)):
                ranks[p][i, rows] = batch[f"rank{p}_{i}"][mine]
                seconds[p][i] += float(batch[f"seconds{p}_{i}"][mine].sum())
    out = []
    for p, ask in enumerate(asks):
        missing = (ranks[p] == -2).sum(axis=1)
        if missing.any():
            raise RuntimeError(f"evaluate {ask.split}: {int(missing.max())} of {sizes[p]} users came back without a "
                               f"rank ({', '.join(r for r, m in zip(ask.models, missing) if m)})")
        cold = split.cold_items()[split.histories(ask.split)[1]]
        out.append({ref: (summarize(ranks[p][i], cold, ask.ks, ask.split, ecfg.exclude_seen, seconds[p][i]),
                          model_version(ref, store, cfg)) for i, ref in enumerate(ask.models)})
    return out
