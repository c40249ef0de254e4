"""Codes for items added after training, with the trained encoders, PCA, fusion and RQ-VAE.

A new item has no interactions, so its collaborative block is formed the way the tokenize
stage forms it for catalog items without training interactions: the mean LightGCN embedding of
its nearest catalog items in content space (cosine over the scaled PCA vectors). Its RQ codes
come from the trained tokenizer; the disambiguation value is the first one free under its
prefix. When the disambiguation level is full for that prefix, the item takes the nearest
last-level RQ code whose prefix still has room (a re-assignment, reported), so codes stay
unique and inside the generator's vocabulary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from cemg_ray import artifacts
from cemg_ray.data.catalog import DataError, build_items_table, compose_text
from cemg_ray.features.extract import BatchEncoder
from cemg_ray.features.pca import project_new_items
from cemg_ray.store import Store
from cemg_ray.tokenize.codes import next_free_suffix
from cemg_ray.tokenize.inputs import borrow_collab, collab_embeddings, content_matrix
from cemg_ray.tokenize.model import SavedTokenizer, load_tokenizer

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig

log = logging.getLogger("cemg_ray")




def read_new_items(path: str) -> pa.Table:
    """Parquet or JSON lines with ``item_id`` and any of title, description/text, image, image_uri."""
    if path.endswith(".parquet"):
        rows = pq.read_table(path).to_pylist()
    else:
        import json

        rows = []
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
    if not rows:
        raise DataError(f"{path}: no items")
    missing = [i for i, r in enumerate(rows) if not r.get("item_id")]
    if missing:
        raise DataError(f"{path}: row {missing[0] + 1} has no field 'item_id' ({len(missing)} rows)")
    return build_items_table(
        [str(r["item_id"]) for r in rows], [r.get("title") for r in rows],
        [r.get("text") or compose_text(r.get("title"), r.get("brand"), r.get("categories"), r.get("description"))
         for r in rows],
        [r.get("image") if isinstance(r.get("image"), bytes) else None for r in rows],
        [r.get("image_uri") or r.get("image_path") for r in rows])


def existing_codes(store: Store) -> tuple[list[str], np.ndarray]:
    base = store.read_parquet(artifacts.CODES)
    ids = base.column("item_id").to_pylist()
    codes = np.asarray(base.column("codes").to_pylist(), dtype=np.int64)
    if store.exists(artifacts.ADDED_CODES):
        added = store.read_parquet(artifacts.ADDED_CODES)
        ids += added.column("item_id").to_pylist()
        codes = np.concatenate([codes, np.asarray(added.column("codes").to_pylist(), dtype=np.int64)])
    return ids, codes


def _new_item_inputs(cfg: JobConfig, store: Store, saved: SavedTokenizer,
                     items: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Encode the new items' text and images, project them with the run's PCA and scale them as the tokenizer
    was trained: (image, text, present [n, 2], the unscaled PCA rows in ``pca/reduced.safetensors``'s layout)."""
    tcfg = saved.cfg
    vectors = {}
    for m, enabled in (("text", cfg.features.use_text), ("image", cfg.features.use_image)):
        if enabled:
            out = BatchEncoder(m, cfg.features.model_dump(), cfg.dataset.images_dir)(
                {c: items.column(c).to_numpy(zero_copy_only=False) for c in items.column_names})
            vectors[m] = (out["embedding"], out["missing"])
    red = project_new_items(store, vectors)
    present = np.stack([~red["image_missing"].astype(bool) & tcfg.use_image,
                        ~red["text_missing"].astype(bool) & tcfg.use_text], 1)
    image = np.where(present[:, :1], red["image"] / saved.scales["image"], 0).astype(np.float32)
    text = np.where(present[:, 1:], red["text"] / saved.scales["text"], 0).astype(np.float32)
    return image, text, present, red


def _borrowed_collab(store: Store, saved: SavedTokenizer, image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """New items have no interactions: their collaborative block is borrowed from the catalog items nearest in
    content that do (``inputs.borrow_collab``, the rule the tokenize stage applies to cold catalog items)."""
    tcfg = saved.cfg
    cat = store.read_tensors(artifacts.PCA_REDUCED)
    cat_present = np.stack([~cat["image_missing"].astype(bool) & tcfg.use_image,
                            ~cat["text_missing"].astype(bool) & tcfg.use_text], 1)
    cat_img = np.where(cat_present[:, :1], cat["image"] / saved.scales["image"], 0)
    cat_txt = np.where(cat_present[:, 1:], cat["text"] / saved.scales["text"], 0)
    cat_collab = collab_embeddings(store, tcfg.collab_source) / saved.scales["collab"]
    counts = artifacts.read_popularity(store) if store.exists(artifacts.POPULARITY) else np.ones(len(cat_collab))
    content = content_matrix(np.concatenate([cat_img, image]), np.concatenate([cat_txt, text]))
    donors = np.flatnonzero(np.asarray(counts) > 0)
    targets = np.arange(len(cat_collab), len(cat_collab) + len(image))
    full_collab = np.concatenate([cat_collab, np.zeros((len(image), cat_collab.shape[1]))]).astype(np.float32)
    return borrow_collab(content, full_collab, donors, targets, tcfg.cold_collab_neighbours)


def _place_unique(rq: np.ndarray, dists: np.ndarray, table: np.ndarray, disamb_size: int,
                  report: dict, item_ids: list[str]) -> list[np.ndarray | None]:
    """A unique code per new item: its quantised prefix plus the next free disambiguation suffix; when the
    suffixes of that prefix are used up, the nearest other last-level code with a free one (``reassigned``);
    None when none has (``unplaceable``). ``table`` grows as codes are placed, so new items never collide."""
    new_codes: list[np.ndarray | None] = []
    for i in range(len(rq)):
        prefix = rq[i].copy()
        suffix = next_free_suffix(table, prefix)
        if suffix >= disamb_size:
            placed = False
            for alt in np.argsort(dists[i, -1]):
                prefix[-1] = alt
                suffix = next_free_suffix(table, prefix)
                if suffix < disamb_size:
                    placed = True
                    report["reassigned"] += 1
                    break
            if not placed:
                report["unplaceable"].append(item_ids[i])
                new_codes.append(None)
                continue
        code = np.concatenate([prefix, [suffix]])
        table = np.concatenate([table, code[None]])
        new_codes.append(code)
    return new_codes


@dataclass
class NewItems:
    """New items through the run's encoders, PCA, fusion and RQ-VAE (``cemg-ray refresh`` keeps all of it)."""

    item_ids: list[str]
    codes: list[np.ndarray | None]  # a unique code per item, None where no code was free (``unplaceable``)
    reduced: dict[str, np.ndarray]  # the PCA rows, ``pca/reduced.safetensors``'s layout
    fused: np.ndarray  # [n, d] the fused input the RQ-VAE coded (``tokenize/fused.safetensors``'s rows)
    collab: np.ndarray  # [n, d_c] the collaborative block borrowed from content neighbours, unscaled


def encode_new_items(cfg: JobConfig, store: Store, items: pa.Table, saved: SavedTokenizer, table: np.ndarray,
                     report: dict) -> NewItems:
    """Code ``items`` (none of them coded yet) against the codes ``table`` already taken; ``report`` counts the
    re-assignments and lists the unplaceable items."""
    image, text, present, red = _new_item_inputs(cfg, store, saved, items)
    collab = _borrowed_collab(store, saved, image, text) if saved.cfg.use_collab \
        else np.zeros((items.num_rows, 0), np.float32)
    rq, dists, _ = saved.model.encode(image, text, collab, present)
    with torch.no_grad():
        fused, _ = saved.model.fuse(*(torch.as_tensor(a) for a in (image, text, collab, present)))
    ids = [str(i) for i in items.column("item_id").to_pylist()]
    codes = _place_unique(rq, dists, table, artifacts.read_codes_meta(store)["level_sizes"][-1], report, ids)
    return NewItems(ids, codes, red, fused.numpy().astype(np.float32),
                    (collab * saved.scales.get("collab", 1.0)).astype(np.float32))


def assign_codes(cfg: JobConfig, store: Store, items: pa.Table) -> dict:
    """Semantic IDs for items added after training, appended to ``tokenize/added_codes.parquet``; items that
    already have a code are counted and left as they are."""
    saved = load_tokenizer(store)
    known_ids, table = existing_codes(store)
    known = set(known_ids)
    dup = [i for i in items.column("item_id").to_pylist() if i in known]
    keep = [i not in known for i in items.column("item_id").to_pylist()]
    items = items.filter(pa.array(keep))
    report = {"requested": len(keep), "already_coded": len(dup), "assigned": 0, "reassigned": 0, "unplaceable": []}
    if items.num_rows == 0:
        return report
    coded = encode_new_items(cfg, store, items, saved, table, report)
    ids, new_codes = coded.item_ids, coded.codes
    ok = [i for i, c in enumerate(new_codes) if c is not None]
    start = len(known_ids)
    added = pa.table({"item_idx": pa.array(np.arange(start, start + len(ok), dtype=np.int32)),
                      "item_id": pa.array([ids[i] for i in ok], pa.string()),
                      "codes": pa.array([new_codes[i].astype(np.int32).tolist() for i in ok], pa.list_(pa.int32()))})
    if store.exists(artifacts.ADDED_CODES):
        added = pa.concat_tables([store.read_parquet(artifacts.ADDED_CODES), added])
    store.write_parquet(artifacts.ADDED_CODES, added)
    report["assigned"] = len(ok)
    report["output"] = store.uri(artifacts.ADDED_CODES)
    return report
