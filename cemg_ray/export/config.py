"""Config of the bulk recommendation export."""

from __future__ import annotations

from cemg_ray.configbase import Section


class ExportConfig(Section):
    output: str | None = None  # s3://bucket/prefix or local path; default run_dir/export
    date: str | None = None  # dt=YYYY-MM-DD partition; default today (UTC)
    k: int = 10
    batch_size: int = 256
    num_actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
