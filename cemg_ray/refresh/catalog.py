"""The grown catalog in a new version's run directory: every per-item artifact gains the new items' rows.

New items go through the run's own encoders, PCA, fusion and RQ-VAE (``tokenize.assign.encode_new_items``, what
``cemg-ray codes assign`` runs): no retraining, and the old rows of every table are written back unchanged, so old
items keep their codes. Row ``i`` stays item ``i`` everywhere: ``data/items.parquet``, ``pca/reduced.safetensors``,
``lightgcn/item_emb.safetensors`` (a new item's borrowed collaborative vector, so that the next refresh borrows from
it too once it has interactions), ``tokenize/codes.parquet`` and ``tokenize/fused.safetensors`` (the generator's
content input). The raw encoder vectors (``features/``) keep the base catalog's rows: nothing reads them after PCA.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from cemg_ray import artifacts
from cemg_ray.data.catalog import build_items_table
from cemg_ray.refresh.increments import Increment, append

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig
    from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")


def _code_new_items(cfg: JobConfig, store: Store, inc: Increment) -> tuple[Any, dict[str, Any]]:
    """The new items coded against every code already taken (catalog and ``codes assign``'s added codes); an item
    ``codes assign`` already coded keeps that code."""
    from cemg_ray.tokenize.assign import encode_new_items, existing_codes
    from cemg_ray.tokenize.model import load_tokenizer

    rows = inc.items
    table = build_items_table([r["item_id"] for r in rows], [r["title"] for r in rows], [r["text"] for r in rows],
                              [r["image"] for r in rows], [r["image_uri"] for r in rows])
    known_ids, taken = existing_codes(store)
    report: dict[str, Any] = {"reassigned": 0, "unplaceable": []}
    coded = encode_new_items(cfg, store, table, load_tokenizer(store), taken, report)
    earlier = {iid: taken[n] for n, iid in enumerate(known_ids)}
    report["kept_from_codes_assign"] = 0
    for n, iid in enumerate(coded.item_ids):
        if iid in earlier:
            coded.codes[n] = earlier[iid]
            report["kept_from_codes_assign"] += 1
    return coded, report


def _drop_unplaceable(inc: Increment, unplaceable: list[str]) -> None:
    """Items no code was free for cannot enter the catalog: they and their interactions become skipped rows."""
    gone = set(unplaceable)
    for iid in unplaceable:
        inc.report.skip("no_free_code", f"item {iid!r}: its code prefix has no free disambiguation value")
    inc.items = [r for r in inc.items if r["item_id"] not in gone]
    for user, item, _, row in [e for e in inc.events if e[1] in gone]:
        inc.report.skip("item_without_code", f"{inc.path}: row {row}: item {item!r} of user {user!r}")
    inc.events = [e for e in inc.events if e[1] not in gone]


def _concat_tensors(store: Store, rel: str, extra: dict[str, np.ndarray]) -> None:
    old = store.read_tensors(rel)
    out = dict(old)
    for key, rows in extra.items():
        if key in old:
            out[key] = np.concatenate([old[key], np.asarray(rows).astype(old[key].dtype)])
    store.write_tensors(rel, out)


def grow_catalog(cfg: JobConfig, store: Store, inc: Increment) -> dict[str, Any]:
    """Append ``inc`` to the run directory ``store`` (a copy of the previous version): data, then every per-item
    artifact. Returns what was added."""
    items, sequences = artifacts.read_items(store), artifacts.read_sequences(store)
    n_old = items.num_rows
    report: dict[str, Any] = {"codes": {"assigned": 0, "reassigned": 0, "unplaceable": []}}
    coded = None
    if inc.items:
        coded, report["codes"] = _code_new_items(cfg, store, inc)
        if report["codes"]["unplaceable"]:
            keep = [n for n, c in enumerate(coded.codes) if c is not None]
            _drop_unplaceable(inc, report["codes"]["unplaceable"])
            coded.item_ids = [coded.item_ids[n] for n in keep]
            coded.codes = [coded.codes[n] for n in keep]
            coded.reduced = {k: v[keep] for k, v in coded.reduced.items()}
            coded.fused, coded.collab = coded.fused[keep], coded.collab[keep]
        report["codes"]["assigned"] = len(coded.item_ids)
    grown, seqs, report["data"] = append(items, sequences, inc)
    artifacts.write_items(store, grown)
    artifacts.write_sequences(store, seqs)
    if coded is not None and coded.item_ids:
        codes = store.read_parquet(artifacts.CODES).sort_by("item_idx")
        added = pa.table({"item_idx": pa.array(np.arange(n_old, n_old + len(coded.item_ids), dtype=np.int32)),
                          "item_id": pa.array(coded.item_ids, pa.string()),
                          "codes": pa.array([np.asarray(c).astype(np.int32).tolist() for c in coded.codes],
                                            pa.list_(pa.int32()))}).cast(codes.schema)
        store.write_parquet(artifacts.CODES, pa.concat_tables([codes, added]))
        _concat_tensors(store, artifacts.PCA_REDUCED, coded.reduced)
        if store.exists(artifacts.FUSED):
            _concat_tensors(store, artifacts.FUSED, {"fused": coded.fused})
        if store.exists(artifacts.LIGHTGCN_EMB):
            emb = store.read_tensors(artifacts.LIGHTGCN_EMB)["item_emb"]
            borrowed = coded.collab if coded.collab.shape[1] == emb.shape[1] else \
                np.repeat(emb.mean(0, keepdims=True), len(coded.item_ids), 0)  # collab off: kept aligned only
            _concat_tensors(store, artifacts.LIGHTGCN_EMB, {"item_emb": borrowed})
        if store.exists(artifacts.ADDED_CODES):  # items of `codes assign` that are in the catalog now leave it
            rest = store.read_parquet(artifacts.ADDED_CODES)
            keep = pa.array([i not in set(coded.item_ids) for i in rest.column("item_id").to_pylist()])
            store.write_parquet(artifacts.ADDED_CODES, rest.filter(keep))
    check_aligned(store, grown.num_rows)
    log.info("refresh: catalog %d -> %d items (%d codes assigned, %d re-assigned), %d interactions added",
             n_old, grown.num_rows, report["codes"]["assigned"], report["codes"]["reassigned"],
             report["data"]["interactions_added"])
    return report


def check_aligned(store: Store, n: int) -> None:
    """Every per-item table has one row per catalog item (a refresh that left one behind would index past it)."""
    sizes = {artifacts.CODES: store.read_parquet(artifacts.CODES, ["item_idx"]).num_rows,
             artifacts.PCA_REDUCED: len(store.read_tensors(artifacts.PCA_REDUCED)["text"])}
    if store.exists(artifacts.FUSED):
        sizes[artifacts.FUSED] = len(store.read_tensors(artifacts.FUSED)["fused"])
    if store.exists(artifacts.LIGHTGCN_EMB):
        sizes[artifacts.LIGHTGCN_EMB] = len(store.read_tensors(artifacts.LIGHTGCN_EMB)["item_emb"])
    wrong = {k: v for k, v in sizes.items() if v != n}
    if wrong:
        raise RuntimeError(f"refresh: per-item tables out of step with the {n}-item catalog: {wrong}")
