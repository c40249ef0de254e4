"""The three inputs of the fusion layer, aligned by item_idx and put on a common scale.

The collaborative block is LightGCN's item embeddings or a trained SASRec's (``tokenize.collab_source``).
PCA outputs and collaborative embeddings live on very different scales; each block is divided by
its mean row norm over present items (the factors are saved, so items added later are scaled
the same way). Items with no training interaction have no collaborative signal of their own:
they get the mean collaborative embedding of their ``n`` nearest neighbours in content space
(cosine, among items that do have interactions), the same rule ``codes assign`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cemg_ray import artifacts
from cemg_ray.store import Store


@dataclass
class ItemInputs:
    image: np.ndarray  # [N, d] float32, zero where missing
    text: np.ndarray  # [N, d]
    collab: np.ndarray  # [N, d_c] (zero-width when collab is off)
    present: np.ndarray  # [N, 2] bool: (image, text)
    collab_borrowed: np.ndarray  # [N] bool: e_c came from content neighbours
    scales: dict[str, float]


def block_scale(x: np.ndarray, present: np.ndarray) -> float:
    rows = x[present] if present.any() else x
    norm = float(np.linalg.norm(rows, axis=1).mean()) if len(rows) else 1.0
    return norm if norm > 1e-12 else 1.0


def content_matrix(image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Unit-norm concatenation of the (already scaled) content blocks, for neighbour search."""
    c = np.concatenate([image, text], axis=1)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


# targets x donors similarities held at once by ``borrow_collab``: 12 bytes each (the float32 similarity and
# argpartition's int64 index), so about 200 MB whatever the catalog
BORROW_MAX_ELEMENTS = 1 << 24


def borrow_collab(content: np.ndarray, collab: np.ndarray, donors: np.ndarray, targets: np.ndarray,
                  n: int, batch: int = 4096, max_elements: int = BORROW_MAX_ELEMENTS) -> np.ndarray:
    """Mean ``collab`` of each target's ``n`` nearest donors by content cosine.

    Targets go ``batch`` at a time, fewer when ``batch x donors`` would pass ``max_elements``: each row's
    neighbours do not depend on the rows beside it, and a fixed 4,096 rows (with a negated copy, and the previous
    batch's index array alive while the next was made) took 4,096 x donors x 24 bytes: 7.8 GB at 100,000 items.

    A target with no content at all (no text, no image: every item of a ``sequences`` catalog), or any target
    when no donor has content, has no neighbours: it gets the mean of every donor, not that of whichever ``n``
    donors a tie of zero similarities happens to pick."""
    out = np.zeros((len(targets), collab.shape[1]), dtype=np.float32)
    if len(targets) == 0 or len(donors) == 0:
        return out
    n = min(n, len(donors))
    batch = max(1, min(batch, max_elements // len(donors)))
    donor_content = content[donors]
    for s in range(0, len(targets), batch):
        sims = content[targets[s:s + batch]] @ donor_content.T
        np.negative(sims, out=sims)  # the nearest first, without a second batch x donors array
        top = np.argpartition(sims, n - 1, axis=1)[:, :n]
        out[s:s + batch] = collab[donors[top]].mean(1)
        del sims, top  # not alive while the next batch's product is made
    blind = ~content[targets].any(1) | ~donor_content.any()
    out[blind] = collab[donors].mean(0)
    return out


def collab_embeddings(store: Store, source: str = "lightgcn") -> np.ndarray:
    """Collaborative item vectors [N, d] in item_idx order: LightGCN's item embeddings, or the trained SASRec's
    input embeddings (``item_emb.weight``: row 0 is padding, row ``i + 1`` is item ``i``)."""
    if source == "lightgcn":
        return store.read_tensors(artifacts.LIGHTGCN_EMB)["item_emb"].astype(np.float32)
    if source == "sasrec":
        return store.read_tensors(artifacts.SASREC)["item_emb.weight"][1:].astype(np.float32)
    raise ValueError(f"tokenize.collab_source: expected 'lightgcn' or 'sasrec', got {source!r}")


def load_inputs(store: Store, num_items: int, train_counts: np.ndarray, use_image: bool, use_text: bool,
                use_collab: bool, neighbours: int, scales: dict[str, float] | None = None,
                collab_source: str = "lightgcn") -> ItemInputs:
    red = store.read_tensors(artifacts.PCA_REDUCED)
    image = red["image"].astype(np.float32)
    text = red["text"].astype(np.float32)
    present = np.stack([~red["image_missing"].astype(bool) & use_image,
                        ~red["text_missing"].astype(bool) & use_text], axis=1)
    if len(image) != num_items or len(text) != num_items:
        raise ValueError(f"{store.uri(artifacts.PCA_REDUCED)}: {len(text)} rows, catalog has {num_items}")
    scales = dict(scales or {})
    scales.setdefault("image", block_scale(image, present[:, 0]))
    scales.setdefault("text", block_scale(text, present[:, 1]))
    image = np.where(present[:, :1], image / scales["image"], 0).astype(np.float32)
    text = np.where(present[:, 1:], text / scales["text"], 0).astype(np.float32)
    borrowed = np.zeros(num_items, dtype=bool)
    if use_collab:
        collab = collab_embeddings(store, collab_source)
        if len(collab) != num_items:
            raise ValueError(f"tokenize.collab_source {collab_source!r}: {len(collab)} item embeddings, "
                             f"catalog has {num_items}")
        warm = np.asarray(train_counts) > 0
        scales.setdefault("collab", block_scale(collab, warm))
        collab = collab / scales["collab"]
        cold = np.flatnonzero(~warm)
        collab[cold] = borrow_collab(content_matrix(image, text), collab, np.flatnonzero(warm), cold, neighbours)
        borrowed[cold] = True
    else:
        collab = np.zeros((num_items, 0), dtype=np.float32)
    return ItemInputs(image, text, collab, present, borrowed, scales)
