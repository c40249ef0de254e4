"""The ``features`` stage: one vector per item and modality, or a missing-modality flag.

Writes ``features/text.parquet`` and ``features/image.parquet`` (item_idx, embedding, missing,
reason) for every catalog item, and ``features/report.json`` (per modality: items, missing by
reason, dim, wall time, items/s). A disabled modality, or a modality no item has (no image, or
no text at all, as in a ``sequences`` catalog of interactions only), is written all-missing
(zero-width vectors) without loading its encoder, and its report says why (``note``), so
downstream stages can tell: PCA skips it and the tokenizer runs on what is left. A modality given as precomputed
vectors is read, aligned and written by one Ray task (``dataset.cpus``), so the driver holds none of them.

The ``pca`` stage lives here too: it fits ``cemg_ray.features.pca`` on the training catalog's vectors.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cemg_ray import artifacts
from cemg_ray.data.split import load_split
from cemg_ray.features.extract import EMPTY_TEXT, MODALITIES, all_missing_table, embeddings, extract
from cemg_ray.features.images import NO_IMAGE
from cemg_ray.features.pca import MODEL, REDUCED, fit_pca, project
from cemg_ray.features.precomputed import load_precomputed
from cemg_ray.stagekit import StageContext
from cemg_ray.store import Store

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig

log = logging.getLogger("cemg_ray")

__all__ = ["embeddings", "has_images", "has_text", "run", "write_precomputed"]


def has_images(items: pa.Table) -> bool:
    """Whether any item carries image bytes or an image path/URI."""
    return any(c in items.column_names and items.column(c).null_count < items.num_rows
               for c in ("image", "image_uri"))


def has_text(items: pa.Table) -> bool:
    """Whether any item has non-blank text (a ``sequences`` catalog has none)."""
    if "text" not in items.column_names:
        return False
    lengths = pc.utf8_length(pc.utf8_trim_whitespace(items.column("text")))
    return bool(pc.any(pc.greater(lengths, 0)).as_py())


def _absent(idx: np.ndarray, reason: str, what: str) -> tuple[pa.Table, dict]:
    """A modality no catalog item has: all-missing, zero-width, its encoder never loaded; the report says so."""
    log.info("features: no item has %s; the %s modality is missing for all %d items (encoder not run)",
             what, "visual" if reason == NO_IMAGE else "text", len(idx))
    return all_missing_table(idx, reason), {
        "enabled": True, "items": len(idx), "missing": len(idx), "missing_by_reason": {reason: len(idx)}, "dim": 0,
        "note": f"no item has {what}: missing for every item, encoder not run"}


def run(ctx: StageContext) -> dict:
    """Encode text and images of every catalog item (Ray Data actor pool, or in-process); a modality given as
    precomputed vectors is read, aligned and written in one Ray task (:func:`write_precomputed`)."""
    cfg, fcfg, store = ctx.cfg, ctx.cfg.features, ctx.store
    modalities = (("text", fcfg.use_text, fcfg.text), ("image", fcfg.use_image, fcfg.image))
    sources = {m: enc_cfg.precomputed for m, enabled, enc_cfg in modalities if enabled and enc_cfg.precomputed}
    precomputed, worker = _precomputed(ctx, sources) if sources else ({}, None)
    encoded = any(enabled and m not in sources for m, enabled, _ in modalities)
    # the driver reads the catalog's text and images only for a modality it encodes (the vectors are the task's)
    items = artifacts.read_items(store, None if encoded else ["item_idx"])
    idx = items.column("item_idx").to_numpy()
    storage = {"endpoint_url": cfg.storage.endpoint_url, "region": cfg.storage.region}
    report: dict = {}
    for modality, enabled, enc_cfg in modalities:
        if modality in precomputed:  # written by write_precomputed
            report[modality] = precomputed[modality]
            continue
        if not enabled:
            table, rep = all_missing_table(idx, "disabled"), {"enabled": False}
        elif modality == "image" and not has_images(items):
            table, rep = _absent(idx, NO_IMAGE, "an image")
        elif modality == "text" and not has_text(items):
            table, rep = _absent(idx, EMPTY_TEXT, "text")
        else:
            if fcfg.use_ray:
                ctx.ensure_ray()
            table, rep = extract(items, modality, fcfg, cfg.dataset.images_dir, storage=storage)
            rep = {"enabled": True, "model": enc_cfg.model, **rep}
        store.write_parquet(artifacts.features_file(modality), table)
        report[modality] = rep
    store.write_json(artifacts.FEATURES_REPORT, report)
    return {**report, "worker": worker} if worker else report


def _precomputed(ctx: StageContext, sources: dict[str, str]) -> tuple[dict[str, dict], dict | None]:
    """({modality: report}, the task's worker) of the precomputed modalities: read in one Ray task with
    ``dataset.cpus`` (the vectors grow with the catalog), or here under ``features.use_ray: false`` (in-process)."""
    from cemg_ray.raytask import run_in_task

    # a relative path is the driver's working directory's; the task's differs. Errors name the path as written
    absolute = {m: os.path.abspath(p) if "://" not in p else p for m, p in sources.items()}
    kwargs = {"sources": absolute, "shown": sources}
    if not ctx.cfg.features.use_ray:
        return write_precomputed(ctx.store, **kwargs), None
    done = run_in_task(ctx, "cemg_ray.features.stage:write_precomputed", kwargs, cpus=ctx.cfg.dataset.cpus)
    worker = done.pop("worker")
    return done, worker


def write_precomputed(store: Store, sources: dict[str, str], shown: dict[str, str] | None = None) -> dict[str, dict]:
    """The precomputed modalities' work (run by :func:`run` in a Ray task): read each file of ``sources``
    ({modality: path}), align it with the catalog by ``item_id`` (or ``item_idx`` order), write
    ``features/<modality>.parquet``; return each modality's report."""
    items = artifacts.read_items(store, ["item_idx", "item_id"])
    shown = shown or sources
    report: dict[str, dict] = {}
    for modality, path in sources.items():
        table = load_precomputed(path, items, shown=shown.get(modality, path))
        miss = table.column("missing").to_numpy(zero_copy_only=False)
        report[modality] = {"enabled": True, "precomputed": shown.get(modality, path), "items": len(miss),
                            "missing": int(miss.sum()), "dim": int(embeddings(table.slice(0, 1))[0].shape[1])}
        store.write_parquet(artifacts.features_file(modality), table)
    return report


def _fit_rows(train_items: np.ndarray, missing: np.ndarray, sample_size: int,
              rng: np.random.Generator) -> np.ndarray:
    rows = np.flatnonzero(train_items & ~missing)
    if len(rows) > sample_size:
        rows = np.sort(rng.choice(rows, sample_size, replace=False))
    return rows


def run_pca(ctx: StageContext) -> dict:
    """Fit PCA per modality on the training catalog and reduce every item to d dimensions, in one Ray task with
    ``pca.cpus`` (the fit and the projection grow with the catalog; the driver only waits)."""
    from cemg_ray.raytask import run_in_task

    return run_in_task(ctx, "cemg_ray.features.stage:fit_and_reduce", {"cfg": ctx.cfg}, cpus=ctx.cfg.pca.cpus)


def sampled_fit_capture(x: np.ndarray, components: np.ndarray) -> float:
    """Share of the variance of all rows ``x`` that the basis ``components`` [d, D] (fitted on a sample, whitened or
    not) captures: what fitting on a sample costs, beside the exact fit's explained variance."""
    basis = components / np.linalg.norm(components, axis=1, keepdims=True)
    centred = x - x.mean(0, dtype=np.float64)
    total = float(np.square(centred).sum())
    return float(np.square(centred @ basis.T).sum() / total) if total > 0 else 1.0


def fit_and_reduce(store: Store, cfg: JobConfig) -> dict:
    """The ``pca`` stage's work (run by :func:`run_pca` in a Ray task): fit, project, write model and report."""
    n = artifacts.num_items(store)
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    train_items = np.asarray(split.train_counts) > 0
    raw = {}
    for m in MODALITIES:
        if store.exists(artifacts.features_file(m)):
            table = store.read_parquet(artifacts.features_file(m)).sort_by("item_idx")
            if table.num_rows != n:
                raise RuntimeError(f"features/{m}.parquet has {table.num_rows} rows for {n} catalog items; "
                                   "re-run the features stage (--force)")
            raw[m] = embeddings(table)
    rng = np.random.default_rng(cfg.pca.seed)
    fit_rows = {m: _fit_rows(train_items, miss, cfg.pca.sample_size, rng) for m, (emb, miss) in raw.items()
                if emb.shape[1] > 0}
    fit_rows = {m: r for m, r in fit_rows.items() if len(r) >= 2}
    widths = [raw[m][0].shape[1] for m in fit_rows] + [len(r) for r in fit_rows.values()]
    d = int(min([cfg.pca.dim, *widths])) if fit_rows else int(cfg.pca.dim)
    if fit_rows and d < cfg.pca.dim:
        log.info("pca: d=%d (requested %d, capped by the encoder width / fitting rows)", d, cfg.pca.dim)
    model: dict[str, np.ndarray] = {"dim": np.array([d], np.int64)}
    reduced: dict[str, np.ndarray] = {}
    report: dict = {"dim": d, "requested_dim": cfg.pca.dim, "train_items": int(train_items.sum()),
                    "whiten": cfg.pca.whiten}
    for m in MODALITIES:
        if m in fit_rows:
            emb, missing = raw[m]
            mean, comps, evr = fit_pca(emb[fit_rows[m]], d, cfg.pca.seed, cfg.pca.whiten)
            model[f"{m}.mean"], model[f"{m}.components"] = mean, comps
            reduced[m] = project(emb, mean, comps, missing)
            reduced[f"{m}_missing"] = missing.astype(np.uint8)
            report[m] = {"available": True, "fit_rows": int(len(fit_rows[m])), "input_dim": int(emb.shape[1]),
                         "explained_variance": round(float(evr.sum()), 4), "missing": int(missing.sum())}
            usable = train_items & ~missing.astype(bool)
            if len(fit_rows[m]) < int(usable.sum()):  # fitted on a sample: the variance it captures on every row
                report[m]["sampled_from"] = int(usable.sum())
                report[m]["explained_variance_all_rows"] = round(sampled_fit_capture(emb[usable], comps), 4)
        else:
            reduced[m], reduced[f"{m}_missing"] = np.zeros((n, d), np.float32), np.ones(n, np.uint8)
            report[m] = {"available": False, "missing": n}
    if not fit_rows:  # e.g. a ``sequences`` catalog: interactions only
        report["note"] = ("no content modality to fit (no item has text or an image, or both are off): every item's "
                          "text and image are zero vectors flagged missing; the tokenizer has only the collaborative "
                          "modality")
        log.info("pca: %s", report["note"])
    store.write_tensors(MODEL, model)
    store.write_tensors(REDUCED, reduced)
    store.write_json(artifacts.PCA_REPORT, report)
    log.info("pca: d=%d, explained variance %s", d,
             {m: report[m].get("explained_variance") for m in MODALITIES if report[m]["available"]})
    return report
