"""The ``data`` stage: load the configured dataset and write items + sequences to the run dir.

The loading (reading, k-core filtering, id mapping) runs in one Ray task with ``dataset.cpus``, so the driver holds no
interaction; a local ``path`` must then be readable where the task runs (this machine for a local cluster; a shared
file system or ``s3://`` on a multi-node one).
"""

from __future__ import annotations

import logging
import os

from cemg_ray import artifacts
from cemg_ray.config import DatasetConfig
from cemg_ray.data.loaders import load_catalog
from cemg_ray.stagekit import StageContext
from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")

LOCAL_PATH_FIELDS = ("path", "images_dir", "overview")  # resolved against the driver's working directory


def run(ctx: StageContext) -> dict:
    """Load the dataset once, in a Ray task; every later stage reads the normalised Parquet tables."""
    from cemg_ray.raytask import run_in_task

    ds = ctx.cfg.dataset
    absolute = {f: os.path.abspath(v) for f in LOCAL_PATH_FIELDS if (v := getattr(ds, f)) and "://" not in v}
    return run_in_task(ctx, "cemg_ray.data.stage:load_and_write", {"ds": ds.model_copy(update=absolute)},
                       cpus=ds.cpus)


def load_and_write(store: Store, ds: DatasetConfig) -> dict:
    """The stage's work: load, report malformed rows with their count, write items and sequences."""
    catalog = load_catalog(ds.format, ds.path, kcore_k=ds.kcore, images_dir=ds.images_dir,
                           synthetic=ds.synthetic, min_rating=ds.min_rating, overview=ds.overview)
    stats = catalog.stats()
    load_report = catalog.report.to_dict()
    if load_report["skipped_total"]:
        log.warning("data: skipped %d malformed rows from %s: %s", load_report["skipped_total"],
                    load_report["source"], load_report["skipped"])
    artifacts.write_items(store, catalog.items)
    artifacts.write_sequences(store, catalog.sequences_table())
    report = {"stats": stats, "load": load_report}
    store.write_json(artifacts.DATA_REPORT, report)
    log.info("data: %d users, %d items, %d interactions", stats["users"], stats["items"],
             stats["interactions"])
    return report
