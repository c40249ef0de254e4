"""Config of the bulk recommendation export."""

from __future__ import annotations

from cemg_ray.configbase import Section


class ExportConfig(Section):
    output: str | None = None  # s3://bucket/prefix or a local path; default: <run_dir>/export
    date: str | None = None  # the dt=YYYY-MM-DD partition; default: today (UTC)
    model: str = "cemg"  # any model of the evaluate registry (popularity, sasrec, cemg, ...)
    k: int = 10
    exclude_seen: bool = True
    batch_size: int = 256
    num_blocks: int | None = None  # input blocks (parallelism); default: 4 per actor
    num_actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    force: bool = False  # re-export even when the partition is already committed for this model version
