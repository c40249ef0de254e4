"""The ``features`` stage: one vector per item and modality, or a missing-modality flag."""

from __future__ import annotations

import logging

import numpy as np

from cemg_ray.features.extract import extract
from cemg_ray.features.precomputed import load_precomputed
from cemg_ray.pipeline import StageContext, require, stage

log = logging.getLogger("cemg_ray")


def embeddings(table) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001 - pa.Table
    """(embedding [N, D] float32, missing [N] bool) of a features table."""
    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    return col.values.to_numpy().reshape(-1, dim).astype(np.float32), table.column("missing").to_numpy()


@stage("features", sections=("features",), after=("data",))
def run(ctx: StageContext) -> dict:
    """Encode text and images of every catalog item (Ray Data actor pool, or in-process)."""
    cfg, fcfg, store = ctx.cfg, ctx.cfg.features, ctx.store
    require(store, cfg, "data")
    items = store.read_parquet("data/items.parquet")
    report: dict = {}
    for modality, enabled, enc_cfg in (("text", fcfg.use_text, fcfg.text), ("image", fcfg.use_image, fcfg.image)):
        store.delete(f"features/{modality}.parquet")
        if not enabled:
            report[modality] = {"enabled": False}
            continue
        if enc_cfg.precomputed:
            table, rep = load_precomputed(enc_cfg.precomputed, items), {"precomputed": enc_cfg.precomputed}
            rep["missing"] = int(table.column("missing").to_numpy().sum())
        elif modality == "image" and not _has_images(items):
            log.info("features: no item has an image; the visual modality is missing for all items")
            report[modality] = {"enabled": True, "items": items.num_rows, "missing": items.num_rows,
                                "missing_by_reason": {"no_image": items.num_rows}}
            continue
        else:
            if fcfg.use_ray:
                ctx.ensure_ray()
            table, rep = extract(items, modality, fcfg, cfg.dataset.images_dir)
        store.write_parquet(f"features/{modality}.parquet", table)
        report[modality] = {"enabled": True, **rep}
    store.write_json("features/report.json", report)
    return report


def _has_images(items) -> bool:  # noqa: ANN001 - pa.Table
    return bool(items.column("image").drop_null().__len__() or items.column("image_uri").drop_null().__len__())
