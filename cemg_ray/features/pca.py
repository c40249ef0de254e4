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

from cemg_ray import artifacts
from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")

MODEL = artifacts.PCA_MODEL
REDUCED = artifacts.PCA_REDUCED


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


def content_vectors(store: Store) -> np.ndarray:
    """One unit-length content vector per item [N, 2d] from the ``pca`` stage's output: each present modality
    (text, image) scaled to unit length, the two side by side, the whole scaled to unit length again (equal say for
    both; a missing one is zeros, an item with neither is all zeros). Their dot products are content similarities,
    which the ``blend`` decoding policy adds to its scores."""
    red = store.read_tensors(REDUCED)
    blocks = []
    for m in ("text", "image"):
        emb = red[m].astype(np.float32)
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        present = ~red[f"{m}_missing"].astype(bool)[:, None] & (norm > 0)
        blocks.append(np.where(present, emb / np.maximum(norm, 1e-12), 0.0))
    out = np.concatenate(blocks, axis=1)
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)
