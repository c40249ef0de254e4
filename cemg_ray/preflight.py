"""Checks a job can pass before any stage runs: the ones that need no computation and no cluster.

``cemg-ray validate`` and ``cemg-ray run`` both call :func:`preflight`, so a job that cannot work fails
in a second with every problem named (file or key), not after minutes in a later stage. The one look outside
this machine: an ``s3://`` run directory's endpoint must answer (one request, seconds at most).
"""

from __future__ import annotations

from pathlib import Path

from cemg_ray.config import ConfigError, JobConfig

RUN_DIR_SCHEMES = ("s3://",)


def preflight(cfg: JobConfig, stages: list[str], source: str) -> None:
    """Raise a ConfigError listing every problem found in ``cfg`` for running ``stages``."""
    from cemg_ray.generate.policy import PolicyError
    from cemg_ray.recommenders import MODELS, UnknownModelError, check_ref, model_name, stages_for, stages_of
    from cemg_ray.stagekit import is_done
    from cemg_ray.store import Store

    problems: list[str] = []
    if "://" in cfg.run_dir and not cfg.run_dir.startswith(RUN_DIR_SCHEMES):
        problems.append(f"{source}: run_dir: {cfg.run_dir!r}: only local paths and s3:// URIs are supported")
    elif cfg.run_dir.startswith("s3://"):  # an endpoint that does not answer fails now, not in a stage's retries
        from cemg_ray.store import s3_unreachable

        if why := s3_unreachable(cfg.run_dir, cfg.storage.endpoint_url, cfg.storage.region):
            problems.append(f"{source}: run_dir: {cfg.run_dir}: {why}")
    ds = cfg.dataset
    if "data" in stages and ds.format != "synthetic":
        if not ds.path:
            problems.append(f"{source}: dataset.path: required for format {ds.format!r}")
        elif "://" not in ds.path and not Path(ds.path).exists():
            problems.append(f"{source}: dataset.path: {ds.path!r} does not exist")
    for key, value in (("dataset.images_dir", ds.images_dir), ("dataset.overview", ds.overview)):
        if "data" in stages and value and "://" not in value and not Path(value).exists():
            problems.append(f"{source}: {key}: {value!r} does not exist")
    if "tokenize" in stages:
        problems += _tokenizer_inputs(cfg, source)
    if "evaluate" in stages:
        floor = cfg.evaluate.select_cold_start_floor
        for key, names in (("evaluate.models", cfg.evaluate.models),
                           ("evaluate.select_default", cfg.evaluate.select_default),
                           ("evaluate.select_cold_start_floor.reference", [floor.reference] if floor else [])):
            for ref in names:  # each a model with a policy the job defines (``cemg:hybrid``)
                try:
                    check_ref(ref, cfg, key)
                except (UnknownModelError, PolicyError) as exc:
                    problems.append(f"{source}: {exc.args[0]}")
        for m in cfg.evaluate.models:
            m = model_name(m) if m.split(":")[0] in MODELS else m
            need = MODELS[m].scheme if m in MODELS else None
            if need is not None and need != cfg.tokenize.scheme:
                problems.append(f"{source}: evaluate.models: {m} needs tokenize.scheme: {need}; this job's is "
                                f"{cfg.tokenize.scheme!r}")
        needed = set(stages_for(cfg.evaluate.models, cfg)) - set(stages)
        if needed and not problems:
            try:
                store = Store.for_job(cfg)
                done = {stage: is_done(store, cfg, stage) for stage in needed}
            except OSError as exc:  # an unreachable S3 endpoint or bucket
                raise ConfigError(source, [f"{source}: run_dir: cannot read {cfg.run_dir}: {exc}"]) from None
            for stage in sorted(needed):
                if not done[stage]:
                    users = [m for m in cfg.evaluate.models if stage in stages_of(m, cfg)]
                    problems.append(f"{source}: evaluate.models: {', '.join(users)} need(s) the {stage!r} stage, "
                                    f"which is neither in this run's stages nor done in {cfg.run_dir}; add it to "
                                    f"--stages or drop the model from evaluate.models")
    if cfg.tracking.enabled:  # MLflow is an optional extra: a missing one fails now, not after the job
        from cemg_ray.tracking import unavailable

        if why := unavailable(cfg.tracking, cfg.run_dir):
            problems.append(f"{source}: {why}")
    if problems:
        raise ConfigError(source, problems)


FORMATS_WITHOUT_CONTENT = ("sequences",)  # interactions only: no item text, no images


def _tokenizer_inputs(cfg: JobConfig, source: str) -> list[str]:
    """The tokenizer needs at least one modality: refuse ``tokenize.use_collab: false`` where nothing else is left."""
    t, f = cfg.tokenize, cfg.features
    if t.use_collab:
        return []
    if cfg.dataset.format in FORMATS_WITHOUT_CONTENT:
        return [f"{source}: tokenize.use_collab: false leaves the tokenizer no input: a {cfg.dataset.format!r} "
                "catalog (dataset.format) has no item text and no images, so the collaborative modality is its "
                "only one; set tokenize.use_collab: true"]
    if not (t.use_text and f.use_text) and not (t.use_image and f.use_image):
        return [f"{source}: tokenize.use_collab: false leaves the tokenizer no input: text is off "
                f"(features.use_text: {str(f.use_text).lower()}, tokenize.use_text: {str(t.use_text).lower()}) and "
                f"images are off (features.use_image: {str(f.use_image).lower()}, tokenize.use_image: "
                f"{str(t.use_image).lower()}); turn one of them on"]
    return []
