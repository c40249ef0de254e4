"""Checks a job can pass before any stage runs: the ones that need no computation and no cluster.

``cemg-ray validate`` and ``cemg-ray run`` both call :func:`preflight`, so a job that cannot work fails
in a second with every problem named (file or key), not after minutes in a later stage.
"""

from __future__ import annotations

from pathlib import Path

from cemg_ray.config import ConfigError, JobConfig

RUN_DIR_SCHEMES = ("s3://",)


def preflight(cfg: JobConfig, stages: list[str], source: str) -> None:
    """Raise a ConfigError listing every problem found in ``cfg`` for running ``stages``."""
    from cemg_ray.pipeline import is_done
    from cemg_ray.recommenders import MODELS, stages_for
    from cemg_ray.store import Store

    problems: list[str] = []
    if "://" in cfg.run_dir and not cfg.run_dir.startswith(RUN_DIR_SCHEMES):
        problems.append(f"{source}: run_dir: {cfg.run_dir!r}: only local paths and s3:// URIs are supported")
    ds = cfg.dataset
    if "data" in stages and ds.format != "synthetic":
        if not ds.path:
            problems.append(f"{source}: dataset.path: required for format {ds.format!r}")
        elif "://" not in ds.path and not Path(ds.path).exists():
            problems.append(f"{source}: dataset.path: {ds.path!r} does not exist")
    for key, value in (("dataset.images_dir", ds.images_dir), ("dataset.overview", ds.overview)):
        if "data" in stages and value and "://" not in value and not Path(value).exists():
            problems.append(f"{source}: {key}: {value!r} does not exist")
    if "evaluate" in stages:
        unknown = [m for m in cfg.evaluate.models if m not in MODELS]
        if unknown:
            problems.append(f"{source}: evaluate.models: unknown model(s) {', '.join(unknown)}; "
                            f"known: {', '.join(MODELS)}")
        needed = set(stages_for(cfg.evaluate.models)) - set(stages)
        if needed and not problems:
            try:
                store = Store.for_job(cfg)
                done = {stage: is_done(store, cfg, stage) for stage in needed}
            except OSError as exc:  # an unreachable S3 endpoint or bucket
                raise ConfigError(source, [f"{source}: run_dir: cannot read {cfg.run_dir}: {exc}"]) from None
            for stage in sorted(needed):
                if not done[stage]:
                    users = [m for m in cfg.evaluate.models if m in MODELS and MODELS[m].stage == stage]
                    problems.append(f"{source}: evaluate.models: {', '.join(users)} need(s) the {stage!r} stage, "
                                    f"which is neither in this run's stages nor done in {cfg.run_dir}; add it to "
                                    f"--stages or drop the model from evaluate.models")
    if problems:
        raise ConfigError(source, problems)
