"""``cemg-ray refresh``'s steps in order: a new version folder from the one serving reads, the increment appended,
the generator fine-tuned from the previous model, both judged on the newest holdout, promoted or kept."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cemg_ray import artifacts
from cemg_ray.config import JobConfig
from cemg_ray.refresh.catalog import grow_catalog
from cemg_ray.refresh.holdout import compare, newest_holdout
from cemg_ray.refresh.increments import Increment, read_increment, touched_users
from cemg_ray.refresh.promote import check_template, decide, read_marker, write_marker, write_serve_config
from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")

REPORT = "refresh/report.json"  # in each version folder, promoted or not
# what a new version does not take over from the previous one: logs, staging, checkpoints, the export and the
# evaluation (both redone), and SASRec (not refreshed: its item table would not cover the new items)
NOT_COPIED = (artifacts.RUN_LOGS, artifacts.STAGING, artifacts.PREVIOUS, artifacts.GENERATOR_CHECKPOINTS,
              artifacts.LIGHTGCN_CHECKPOINTS, "export", "eval", "refresh", artifacts.SASREC,
              *(artifacts.stage_marker(s) for s in ("sasrec", "evaluate", "export")))
REFRESHED_STAGES = ["popularity", "train", "evaluate"]


def _uri(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())


def _child(root: Store, name: str) -> str:
    return f"{root.root_uri}/{name}" if "://" in root.root_uri else str(Path(root.root_uri).resolve() / name)


def next_version(root: Store) -> str:
    """``v0001``, ``v0002``, ...: one past the highest version folder under the root (rejected ones count)."""
    import pyarrow.fs as pafs

    entries = root.fs.get_file_info(pafs.FileSelector(root.path(), allow_not_found=True))
    names = [e.base_name for e in entries if e.type == pafs.FileType.Directory]
    taken = [int(n[1:]) for n in names if n[:1] == "v" and n[1:].isdigit()]
    return f"v{max(taken, default=0) + 1:04d}"


def copy_run(src: Store, dst: Store) -> int:
    """The previous version's outputs, less :data:`NOT_COPIED`; the manifest loses the records of those stages."""
    n = 0
    for rel in src.list("", recursive=True):
        if any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in NOT_COPIED):
            continue
        dst.write_bytes(rel, src.read_bytes(rel))
        n += 1
    manifest = artifacts.read_manifest(dst)
    for stage in ("sasrec", "evaluate", "export"):
        manifest.get("stages", {}).pop(stage, None)
    artifacts.write_manifest(dst, manifest)
    return n


def refreshed_config(job: JobConfig, prev: JobConfig, run_dir: str, prev_dir: str) -> JobConfig:
    """The previous run's config with the fine-tune's budget and warm start, the models a refresh keeps, and this
    job's cluster and storage."""
    from cemg_ray.recommenders import model_stage

    kept = [m for m in prev.evaluate.models if model_stage(m) in ("popularity", "train")]
    chosen = [m for m in prev.evaluate.select_default if model_stage(m) == "train"]
    return prev.model_copy(update={
        "run_dir": run_dir, "ray": job.ray, "storage": job.storage, "refresh": job.refresh,
        "train": prev.train.model_copy(update={"init_from": prev_dir, "epochs": job.refresh.epochs,
                                               "max_train_s": job.refresh.max_train_s}),
        "evaluate": prev.evaluate.model_copy(update={"models": kept or ["popularity"], "select_default": chosen}),
    })


def _check_previous(prev: JobConfig, prev_store: Store, new_items: bool) -> None:
    if (artifacts.read_marker(prev_store, "train") or {}).get("status") != "ok":
        raise ValueError(f"refresh: {prev_store.root_uri} has no completed train stage to start from")
    if new_items and prev.tokenize.scheme != "cemg":
        raise ValueError(f"refresh: new items are coded with the cemg scheme's fusion + RQ-VAE; {prev_store.root_uri} "
                         f"used tokenize.scheme {prev.tokenize.scheme!r}")
    if prev.tokenize.use_collab and prev.tokenize.collab_source != "lightgcn":
        raise ValueError("refresh: tokenize.collab_source 'sasrec' is not refreshed (SASRec is not); use lightgcn")


def run_refresh(job: JobConfig, increment: str) -> dict[str, Any]:
    """One refresh (docs/OPERATIONS.md, "Refreshing a model"): the report, also written to
    ``<version>/refresh/report.json``; serving's files change only when it promotes."""
    from cemg_ray.api import RunError, run_store

    t_start = time.perf_counter()
    rcfg = job.refresh
    if rcfg.serve_config:
        check_template(rcfg.serve_template)
    root = Store(rcfg.root, job.storage.endpoint_url, job.storage.region)
    current = read_marker(root)
    prev_dir = current["run_dir"] if current else _uri(job.run_dir)
    try:
        prev_store = run_store(prev_dir, job.storage.endpoint_url, job.storage.region)
    except RunError as exc:
        raise ValueError(f"refresh: the run to start from: {exc}") from None
    prev = JobConfig.model_validate(artifacts.read_manifest(prev_store)["config"])
    catalog_ids = {str(i) for i in artifacts.read_items(prev_store, ["item_id"]).column("item_id").to_pylist()}
    inc = read_increment(increment, catalog_ids)
    _check_previous(prev, prev_store, bool(inc.items))
    version = next_version(root)
    vdir = _child(root, version)
    vstore = Store(vdir, job.storage.endpoint_url, job.storage.region)
    report: dict[str, Any] = {"version": version, "run_dir": vdir, "previous_run_dir": prev_dir,
                              "started": datetime.now(UTC).isoformat(), "margin": rcfg.margin, "metric": rcfg.metric,
                              "increment": inc.summary(), "timing_s": {}}

    def finish(promote: bool, reason: str) -> dict[str, Any]:
        report["decision"] = {"promote": promote, "reason": reason}
        report["serving_run_dir"] = vdir if promote else prev_dir
        report["timing_s"]["total"] = round(time.perf_counter() - t_start, 2)
        vstore.write_json(REPORT, report)
        log.info("refresh %s: %s", version, reason)
        return report

    if inc.bad_share > rcfg.max_bad_row_share:
        return finish(False, f"kept the previous version: the increment is broken: {inc.bad_rows} of {inc.rows} rows "
                             f"({inc.bad_share:.1%}) are malformed, over refresh.max_bad_row_share "
                             f"{rcfg.max_bad_row_share:.0%} ({dict(inc.report.skipped)}; first: "
                             f"{next(iter(inc.report.examples.values()), '')})")
    if not inc.events and not inc.items:
        return finish(False, "kept the previous version: the increment adds no valid interaction and no item")
    try:
        return _build_and_judge(job, inc, prev, prev_store, prev_dir, root, version, vstore, report, finish)
    except BaseException as exc:  # the version folder says what failed; serving still reads the previous one
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["serving_run_dir"] = prev_dir
        vstore.write_json(REPORT, report)
        raise


def _build_and_judge(job: JobConfig, inc: Increment, prev: JobConfig, prev_store: Store, prev_dir: str, root: Store,
                     version: str, vstore: Store, report: dict[str, Any],
                     finish: Callable[[bool, str], dict[str, Any]]) -> dict[str, Any]:
    """Steps 2-6 of the module docstring, in the new version folder ``vstore``."""
    from cemg_ray.api import Run

    rcfg, vdir = job.refresh, vstore.root_uri
    t0 = time.perf_counter()
    report["copied_files"] = copy_run(prev_store, vstore)
    cfg = refreshed_config(job, prev, vdir, prev_dir)
    report["catalog"] = grow_catalog(cfg, vstore, inc)
    report["increment"] = inc.summary()  # with the items no code was free for, if any
    marker = artifacts.read_marker(vstore, "data") or {}
    marker.setdefault("report", {})["refreshed"] = {"version": version, "from": prev_dir, **report["catalog"]["data"]}
    vstore.write_json(artifacts.stage_marker("data"), marker)
    report["timing_s"]["append_and_code"] = round(time.perf_counter() - t0, 2)

    from cemg_ray.pipeline import run_pipeline

    manifest = run_pipeline(cfg, REFRESHED_STAGES, force=True)
    report["timing_s"]["fine_tune"] = manifest["stages"]["train"]["wall_s"]
    report["timing_s"]["popularity_and_evaluate"] = round(manifest["stages"]["popularity"]["wall_s"]
                                                         + manifest["stages"]["evaluate"]["wall_s"], 2)
    report["fine_tune"] = {k: manifest["stages"]["train"]["report"].get(k) for k in
                           ("epochs_run", "best_epoch", "best_valid_ndcg10", "train_s", "steps", "model_version")}

    t0 = time.perf_counter()
    holdout = newest_holdout(cfg, vstore, touched_users(artifacts.read_sequences(vstore), inc), rcfg.holdout,
                             rcfg.min_holdout_users)
    previous, refreshed = Run(prev_store, rcfg.model), Run(vstore, rcfg.model)
    item_ids = refreshed.item_ids
    report["holdout"] = compare(previous, refreshed, holdout, item_ids, report["catalog"]["data"]["items_before"],
                                rcfg.metric)
    report["timing_s"]["holdout"] = round(time.perf_counter() - t0, 2)
    decision = decide(report["holdout"]["previous"][rcfg.metric], report["holdout"]["refreshed"][rcfg.metric],
                      rcfg.metric, rcfg.margin, report["holdout"]["users"])
    if not decision.promote:
        return finish(False, decision.reason)
    t0 = time.perf_counter()
    if rcfg.export:
        report["export"] = run_pipeline(cfg, ["export"], force=True)["stages"]["export"]["report"]
    if rcfg.serve_config:
        write_serve_config(rcfg.serve_template, rcfg.serve_config, vdir)
        report["serve_config"] = rcfg.serve_config
    write_marker(root, vdir, version, refreshed.model_version, prev_dir, decision.reason)  # the commit point
    report["timing_s"]["promote"] = round(time.perf_counter() - t0, 2)
    return finish(True, decision.reason)
