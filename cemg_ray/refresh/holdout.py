"""The previous and the refreshed model judged on the same newest holdout, each through ``api.Run`` (the path
serving, export and the Python API rank through).

The holdout is each user's newest interaction in the refreshed data (leave-one-out's test target), for the users the
increment touched (or every user). Both models see the same histories by item id: the previous one ignores the items
it has never seen (as a serving replica ignores unknown ids) and cannot hit a target it does not know, which is what
serving it one more day would have given those users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cemg_ray.data.split import load_split
from cemg_ray.evaluate.harness import padded
from cemg_ray.evaluate.metrics import hr_ndcg, standard_errors, target_ranks

if TYPE_CHECKING:
    from cemg_ray.api import Run
    from cemg_ray.config import JobConfig
    from cemg_ray.store import Store

NO_TARGET = -2  # a target the model's catalog lacks: never equal to an item or to the -1 padding


@dataclass
class Holdout:
    user_idx: np.ndarray
    histories: list[np.ndarray]  # item indices of the refreshed catalog
    targets: np.ndarray
    which: str  # "increment" or "all"
    note: str | None = None


def newest_holdout(cfg: JobConfig, store: Store, touched: np.ndarray, which: str, min_users: int) -> Holdout:
    """Each user's newest interaction: the increment's users, or every user when asked or when too few were touched."""
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    keep = np.isin(split.user_idx, touched)
    note = None
    if which == "increment" and keep.sum() < min_users:
        note = (f"the increment touched {int(keep.sum())} users with a holdout interaction, fewer than "
                f"refresh.min_holdout_users={min_users}: every user's newest interaction is the holdout")
        which = "all"
    if which == "all":
        keep = np.ones(len(split.user_idx), dtype=bool)
    rows = np.flatnonzero(keep)
    return Holdout(split.user_idx[rows], [split.test_history[r] for r in rows], split.test_target[rows], which, note)


def ranked(run: Run, item_ids: np.ndarray, holdout: Holdout, k: int, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(each user's 0-based target rank or -1, the top-k as refreshed-catalog indices [U, k]) for ``run``."""
    to_run = np.asarray([run.item_index.get(str(i), -1) for i in item_ids], dtype=np.int64)
    back = np.full(len(run.item_ids) + 1, -1, dtype=np.int64)  # the run's index -> the refreshed catalog's
    index = {str(i): n for n, i in enumerate(item_ids)}
    back[:-1] = [index.get(str(i), -1) for i in run.item_ids]
    ranks = np.empty(len(holdout.targets), dtype=np.int64)
    lists = np.full((len(holdout.targets), k), -1, dtype=np.int64)
    for s in range(0, len(holdout.targets), batch):
        hists = [to_run[h] for h in holdout.histories[s:s + batch]]
        hists = [h[h >= 0] for h in hists]  # ids the model has never seen are ignored, as serving does
        n = len(hists)
        rows = padded(run.rank_indices(hists, [k] * n, [True] * n), k)
        targets = to_run[holdout.targets[s:s + batch]]
        ranks[s:s + n] = target_ranks(rows, np.where(targets >= 0, targets, NO_TARGET))
        lists[s:s + n] = np.where(rows >= 0, back[rows], -1)
    return ranks, lists


def compare(previous: Run, refreshed: Run, holdout: Holdout, item_ids: np.ndarray, new_from: int,
            metric: str) -> dict[str, Any]:
    """Both models' figures on ``holdout`` (means and standard errors at ``metric``'s K), and how each treats the
    items added since the previous version (indices ``>= new_from``)."""
    k = int(metric.split("@")[1])
    out: dict[str, Any] = {"users": int(len(holdout.targets)), "which": holdout.which, "note": holdout.note,
                           "new_item_targets": int((holdout.targets >= new_from).sum())}
    for name, run in (("previous", previous), ("refreshed", refreshed)):
        ranks, lists = ranked(run, item_ids, holdout, k)
        new_target = holdout.targets >= new_from
        out[name] = {"run_dir": run.run_uri, "model": run.model, "model_version": run.model_version,
                     **hr_ndcg(ranks, [k]), "se": standard_errors(ranks, [k]),
                     "lists_with_new_items": round(float((lists >= new_from).any(1).mean()), 4) if len(lists) else 0.0,
                     "new_item_targets_hit": int(((ranks >= 0) & new_target).sum())}
    return out


def grown_users(store: Store, previous: Store) -> np.ndarray:
    """``user_idx`` of the users whose sequence in ``store`` is longer than in ``previous`` (new users included):
    the users a refresh's increment touched."""
    from cemg_ray import artifacts

    before = {str(u): len(s) for u, s in zip(*(artifacts.read_sequences(previous, ["user_id", "items"]).column(c)
                                                .to_pylist() for c in ("user_id", "items")))}
    now = artifacts.read_sequences(store, ["user_idx", "user_id", "items"]).to_pylist()
    return np.asarray([r["user_idx"] for r in now if len(r["items"]) > before.get(str(r["user_id"]), 0)], np.int64)


def main(argv: list[str] | None = None) -> None:
    """``python -m cemg_ray.refresh.holdout VERSION OTHER...``: other runs (a retrain from scratch, the previous
    version) judged on a refreshed version's holdout, by item id, each with its default list."""
    import argparse
    import json

    from cemg_ray.api import open_run
    from cemg_ray.refresh.refresh import REPORT

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("version", help="a refreshed version folder (<refresh.root>/vNNNN)")
    p.add_argument("others", nargs="+", help="run directories to judge on its holdout")
    p.add_argument("--metric", default="NDCG@10")
    p.add_argument("--model", default=None, help="the list of every run (default: each run's default list)")
    a = p.parse_args(argv)
    version = open_run(a.version, a.model)
    report = version.store.read_json(REPORT)
    previous = open_run(report["previous_run_dir"], a.model)
    cfg = version.cfg
    hold = newest_holdout(cfg, version.store, grown_users(version.store, previous.store), cfg.refresh.holdout,
                          cfg.refresh.min_holdout_users)
    new_from = report["catalog"]["data"]["items_before"]
    rows = {}
    for other in a.others:
        res = compare(open_run(other, a.model), version, hold, version.item_ids, new_from, a.metric)
        rows[other] = res["previous"]
        rows[a.version] = res["refreshed"]
    print(json.dumps({"holdout_users": len(hold.targets), "which": hold.which, "metric": a.metric, "runs": rows},
                     indent=2))


if __name__ == "__main__":
    main()
