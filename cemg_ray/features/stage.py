"""The ``features`` stage: one vector per item and modality, or a missing-modality flag.

Writes ``features/text.parquet`` and ``features/image.parquet`` (item_idx, embedding, missing,
reason) for every catalog item, and ``features/report.json`` (per modality: items, missing by
reason, dim, wall time, items/s). A disabled modality, or images when no item has one, is
written all-missing (zero-width vectors) so downstream stages can tell.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from cemg_ray.features.extract import all_missing_table, embeddings, extract
from cemg_ray.features.images import NO_IMAGE
from cemg_ray.features.precomputed import load_precomputed
from cemg_ray.pipeline import StageContext, require, stage

log = logging.getLogger("cemg_ray")

__all__ = ["embeddings", "has_images", "run"]


def has_images(items: pa.Table) -> bool:
    """Whether any item carries image bytes or an image path/URI."""
    return any(c in items.column_names and items.column(c).null_count < items.num_rows
               for c in ("image", "image_uri"))


@stage("features", sections=("features",), after=("data",))
def run(ctx: StageContext) -> dict:
    """Encode text and images of every catalog item (Ray Data actor pool, or in-process)."""
    cfg, fcfg, store = ctx.cfg, ctx.cfg.features, ctx.store
    require(store, cfg, "data")
    items = store.read_parquet("data/items.parquet")
    idx = items.column("item_idx").to_numpy()
    storage = {"endpoint_url": cfg.storage.endpoint_url, "region": cfg.storage.region}
    report: dict = {}
    for modality, enabled, enc_cfg in (("text", fcfg.use_text, fcfg.text), ("image", fcfg.use_image, fcfg.image)):
        if not enabled:
            table, rep = all_missing_table(idx, "disabled"), {"enabled": False}
        elif enc_cfg.precomputed:
            table = load_precomputed(enc_cfg.precomputed, items)
            miss = table.column("missing").to_numpy(zero_copy_only=False)
            rep = {"enabled": True, "precomputed": enc_cfg.precomputed, "items": len(miss),
                   "missing": int(miss.sum()), "dim": int(embeddings(table.slice(0, 1))[0].shape[1])}
        elif modality == "image" and not has_images(items):
            log.info("features: no item has an image; the visual modality is missing for all items")
            table = all_missing_table(idx, NO_IMAGE)
            rep = {"enabled": True, "items": len(idx), "missing": len(idx), "missing_by_reason": {NO_IMAGE: len(idx)},
                   "dim": 0}
        else:
            if fcfg.use_ray:
                ctx.ensure_ray()
            table, rep = extract(items, modality, fcfg, cfg.dataset.images_dir, storage=storage)
            rep = {"enabled": True, "model": enc_cfg.model, **rep}
        store.write_parquet(f"features/{modality}.parquet", table)
        report[modality] = rep
    store.write_json("features/report.json", report)
    return report
