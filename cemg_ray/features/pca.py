"""The ``pca`` stage: reduce each modality to a common width d, fitted on the training catalog only.

Both modalities share d, since the fusion adds them (Eq. 3): d = min(pca.dim, the narrowest
available encoder, the number of fitting rows). The fit uses only items that appear in the
training split (``load_split(...).train_counts > 0``; a random sample of at most
``pca.sample_size`` of them), never items seen only in validation/test targets, so nothing about
held-out items leaks into the projection. Items without a modality get a zero vector and a
missing flag. The saved mean and components project items added later the same way
(:func:`transform_new_items`).
"""

from __future__ import annotations

import logging

import numpy as np

from cemg_ray.data.split import load_split
from cemg_ray.features.extract import MODALITIES, embeddings
from cemg_ray.pipeline import StageContext, require, stage
from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")

MODEL = "pca/model.safetensors"
REDUCED = "pca/reduced.safetensors"


def fit_pca(x: np.ndarray, dim: int, seed: int = 0, whiten: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn PCA: (mean [D], projection [d, D], explained variance ratio [d]).

    With ``whiten`` the projection rows are divided by the component standard deviations, so that
    ``(x - mean) @ projection.T`` equals ``PCA(whiten=True).transform(x)``.
    """
    from sklearn.decomposition import PCA

    pca = PCA(n_components=dim, whiten=whiten, random_state=seed).fit(x)
    comps = pca.components_
    if whiten:
        comps = comps / np.sqrt(pca.explained_variance_)[:, None]
    return pca.mean_.astype(np.float32), comps.astype(np.float32), pca.explained_variance_ratio_


def project(x: np.ndarray, mean: np.ndarray, components: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Reduced vectors [N, d]; rows flagged missing are zero."""
    out = ((np.asarray(x, np.float32) - mean) @ components.T).astype(np.float32)
    out[np.asarray(missing, bool)] = 0.0
    return out


def transform_new_items(store: Store, text_emb: np.ndarray | None = None, image_emb: np.ndarray | None = None,
                        text_missing: np.ndarray | None = None,
                        image_missing: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Apply the run's saved PCA to raw encoder vectors of items added later.

    Returns the ``pca/reduced.safetensors`` layout for those items: ``text``/``image`` [N, d] float32
    and ``text_missing``/``image_missing`` [N] uint8. A modality passed as None, flagged missing,
    or not fitted in this run comes out as zero vectors flagged missing.
    """
    model = store.read_tensors(MODEL)
    d = int(model["dim"][0])
    given = {"text": (text_emb, text_missing), "image": (image_emb, image_missing)}
    sizes = {len(e) for e, _ in given.values() if e is not None} | {len(m) for _, m in given.values() if m is not None}
    if len(sizes) > 1:
        raise ValueError(f"transform_new_items: text and image inputs have different item counts {sorted(sizes)}")
    n = sizes.pop() if sizes else 0
    out: dict[str, np.ndarray] = {}
    for m, (emb, missing) in given.items():
        miss = np.zeros(n, bool) if missing is None else np.asarray(missing, bool).copy()
        if emb is None or f"{m}.mean" not in model or (emb.ndim == 2 and emb.shape[1] == 0):
            out[m], out[f"{m}_missing"] = np.zeros((n, d), np.float32), np.ones(n, np.uint8)
            continue
        mean, comps = model[f"{m}.mean"], model[f"{m}.components"]
        if emb.ndim != 2 or emb.shape[1] != mean.shape[0]:
            raise ValueError(f"transform_new_items: {m} vectors have shape {emb.shape}, the fitted PCA expects "
                             f"[N, {mean.shape[0]}] (same encoder as the run: features.{m}.model)")
        miss |= ~np.isfinite(emb).all(1)
        out[m] = project(np.where(miss[:, None], 0.0, emb), mean, comps, miss)
        out[f"{m}_missing"] = miss.astype(np.uint8)
    return out


def project_new_items(store: Store, vectors: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """:func:`transform_new_items` taking {modality: (emb, missing)} as :func:`encode_items` returns it."""
    kw = {}
    for m, (emb, missing) in vectors.items():
        kw[f"{m}_emb"], kw[f"{m}_missing"] = emb, missing
    return transform_new_items(store, **kw)


def _fit_rows(train_items: np.ndarray, missing: np.ndarray, sample_size: int,
              rng: np.random.Generator) -> np.ndarray:
    rows = np.flatnonzero(train_items & ~missing)
    if len(rows) > sample_size:
        rows = np.sort(rng.choice(rows, sample_size, replace=False))
    return rows


@stage("pca", sections=("pca",), after=("features",))
def run(ctx: StageContext) -> dict:
    """Fit PCA per modality on the training catalog and reduce every item to d dimensions."""
    cfg, store = ctx.cfg, ctx.store
    require(store, cfg, "features")
    n = store.read_parquet("data/items.parquet", columns=["item_idx"]).num_rows
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    train_items = np.asarray(split.train_counts) > 0
    raw = {}
    for m in MODALITIES:
        if store.exists(f"features/{m}.parquet"):
            table = store.read_parquet(f"features/{m}.parquet").sort_by("item_idx")
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
        else:
            reduced[m], reduced[f"{m}_missing"] = np.zeros((n, d), np.float32), np.ones(n, np.uint8)
            report[m] = {"available": False, "missing": n}
    store.write_tensors(MODEL, model)
    store.write_tensors(REDUCED, reduced)
    store.write_json("pca/report.json", report)
    log.info("pca: d=%d, explained variance %s", d,
             {m: report[m].get("explained_variance") for m in MODALITIES if report[m]["available"]})
    return report
