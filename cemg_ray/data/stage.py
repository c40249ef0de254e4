"""The ``data`` stage: load the configured dataset and write items + sequences to the run dir."""

from __future__ import annotations

import logging

from cemg_ray import artifacts
from cemg_ray.data.loaders import load_catalog
from cemg_ray.stagekit import StageContext

log = logging.getLogger("cemg_ray")


def run(ctx: StageContext) -> dict:
    """Load the dataset once; every later stage reads the normalised Parquet tables."""
    ds = ctx.cfg.dataset
    catalog = load_catalog(ds.format, ds.path, kcore_k=ds.kcore, images_dir=ds.images_dir,
                           synthetic=ds.synthetic, min_rating=ds.min_rating, overview=ds.overview)
    stats = catalog.stats()
    load_report = catalog.report.to_dict()
    if load_report["skipped_total"]:
        log.warning("data: skipped %d malformed rows from %s: %s", load_report["skipped_total"],
                    load_report["source"], load_report["skipped"])
    artifacts.write_items(ctx.store, catalog.items)
    artifacts.write_sequences(ctx.store, catalog.sequences_table())
    report = {"stats": stats, "load": load_report}
    ctx.store.write_json(artifacts.DATA_REPORT, report)
    log.info("data: %d users, %d items, %d interactions", stats["users"], stats["items"],
             stats["interactions"])
    return report
