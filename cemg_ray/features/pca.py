"""The ``pca`` stage: reduce each modality to a common width d, fitted on the training catalog only.

Both modalities must share d, since the fusion adds them (Eq. 3): d = min(pca.dim, the narrowest
present encoder, the number of fitting rows). The fit uses items that appear in the training
split (a random sample of at most ``pca.sample_size``), never validation/test-only items; the
saved mean and components project items added later the same way (:func:`project`).
"""

from __future__ import annotations

import logging

import numpy as np

from cemg_ray.data.split import load_split
from cemg_ray.features.stage import embeddings
from cemg_ray.pipeline import StageContext, require, stage
from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")

MODALITIES = ("text", "image")


def fit_pca(x: np.ndarray, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn PCA: (mean [D], components [d, D], explained variance ratio [d])."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=dim, svd_solver="auto", random_state=seed).fit(x)
    return pca.mean_.astype(np.float32), pca.components_.astype(np.float32), pca.explained_variance_ratio_


def project(x: np.ndarray, mean: np.ndarray, components: np.ndarray, missing: np.ndarray) -> np.ndarray:
    out = ((x - mean) @ components.T).astype(np.float32)
    out[missing] = 0.0
    return out


def project_new_items(store: Store, vectors: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Apply the saved PCA to new items' raw vectors {modality: (emb, missing)} -> reduced arrays."""
    model = store.read_tensors("pca/model.safetensors")
    d = int(model["dim"][0])
    out: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        emb, missing = vectors.get(m, (None, None))
        n = len(next(iter(vectors.values()))[0])
        if emb is None or f"{m}.mean" not in model:
            out[m], out[f"{m}_missing"] = np.zeros((n, d), np.float32), np.ones(n, np.uint8)
        else:
            out[m] = project(emb, model[f"{m}.mean"], model[f"{m}.components"], missing)
            out[f"{m}_missing"] = missing.astype(np.uint8)
    return out


@stage("pca", sections=("pca",), after=("features",))
def run(ctx: StageContext) -> dict:
    cfg, store = ctx.cfg, ctx.store
    require(store, cfg, "features")
    n = store.read_parquet("data/items.parquet", columns=["item_idx"]).num_rows
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    train_items = split.train_counts > 0
    raw = {m: embeddings(store.read_parquet(f"features/{m}.parquet"))
           for m in MODALITIES if store.exists(f"features/{m}.parquet")}
    rng = np.random.default_rng(0)
    fit_rows = {}
    for m, (_, missing) in raw.items():
        rows = np.flatnonzero(train_items & ~missing)
        if len(rows) > cfg.pca.sample_size:
            rows = np.sort(rng.choice(rows, cfg.pca.sample_size, replace=False))
        if len(rows) >= 2:
            fit_rows[m] = rows
    widths = [raw[m][0].shape[1] for m in fit_rows] + [len(r) for r in fit_rows.values()]
    d = int(min([cfg.pca.dim, *widths])) if fit_rows else 1
    model: dict[str, np.ndarray] = {"dim": np.array([d], np.int64)}
    reduced: dict[str, np.ndarray] = {}
    report: dict = {"dim": d, "requested_dim": cfg.pca.dim}
    for m in MODALITIES:
        if m in fit_rows:
            emb, missing = raw[m]
            mean, comps, evr = fit_pca(emb[fit_rows[m]], d)
            model[f"{m}.mean"], model[f"{m}.components"] = mean, comps
            reduced[m] = project(emb, mean, comps, missing)
            reduced[f"{m}_missing"] = missing.astype(np.uint8)
            report[m] = {"fit_rows": int(len(fit_rows[m])), "input_dim": int(emb.shape[1]),
                         "explained_variance": float(evr.sum()), "missing": int(missing.sum())}
        else:
            reduced[m], reduced[f"{m}_missing"] = np.zeros((n, d), np.float32), np.ones(n, np.uint8)
            report[m] = {"available": False}
    store.write_tensors("pca/model.safetensors", model)
    store.write_tensors("pca/reduced.safetensors", reduced)
    store.write_json("pca/report.json", report)
    log.info("pca: d=%d %s", d, {m: report[m].get("explained_variance") for m in MODALITIES})
    return report
