"""Experiment tracking: each ``cemg-ray run`` becomes one MLflow run, logged from what the run directory holds.

What a run carries (docs/TRACKING.md): the resolved config as params (``train.lr``), every stage's wall time and the
numbers of its report as metrics (``<stage>.wall_s``, ``tokenize.before_disambiguation.collision_rate``), the
training curves as step metrics (``<stage>.epoch.<figure>``, step = the epoch the history records), the evaluation
(``eval.<model>.<subset>.<metric>`` and ``..._se`` for its standard error) and the plots and reports as artifacts,
in the run directory's layout (``eval/report.md``).

Why the curves are read from the histories the stages store, after the job, rather than logged live through Ray
Train's MLflow integration (``ray.air.integrations.mlflow.setup_mlflow`` in each training loop): only LightGCN and
the generator train under Ray Train (SASRec and the RQ-VAE train in-process), Ray Train's workers on a cluster
cannot reach a tracking store on the driver's disk, a resumed or skipped stage would log nothing, and tracking
would become something training can fail on. Every history already holds one row per epoch, so the run is as
complete; what it lacks is watching the curves while the job runs.

MLflow is an optional extra (``pip install "cemg-ray[tracking]"``) imported only here and only when tracking is on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from cemg_ray import artifacts
from cemg_ray.stages import STAGES

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig, TrackingConfig
    from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")

INSTALL_HINT = 'pip install "cemg-ray[tracking]"'
LOCAL_STORE = "mlruns"  # the default store's folder: mlflow.db (SQLite: MLflow 3 refuses new file stores) + artifacts/
LOCAL_DB = "mlflow.db"
LOCAL_ARTIFACTS = "artifacts"
URI_SCHEMELESS = ("databricks", "databricks-uc")  # MLflow URIs without a colon, not paths

# MLflow's limits (mlflow.utils.validation): longer values are cut, the full config goes in as config.json
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
ARTIFACT_SUFFIXES = (".png", ".md", ".json")
MAX_ARTIFACT_BYTES = 20 << 20  # reports and plots are kB; a bigger file is not one

# per-epoch histories a stage stores in a file: stage -> (path, key inside it; None: the file is the list)
CURVE_FILES: dict[str, tuple[str, str | None]] = {
    "lightgcn": (artifacts.LIGHTGCN_REPORT, "epochs"),
    "tokenize": (artifacts.TOKENIZE_HISTORY, None),
    "train": (artifacts.GENERATOR_HISTORY, None),
}


class TrackingError(OSError):
    """A finished job whose MLflow run could not be logged (an OSError: the CLI prints it as an expected failure)."""


# -- where the run goes ----------------------------------------------------------------------------
def resolve_store(settings: TrackingConfig, run_dir: str) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment; None: the store's own default).

    ``uri: null`` means ``$MLFLOW_TRACKING_URI`` when set, else ``mlruns/`` beside a local run directory (so every
    job under ``runs/`` shares one store) or in the working directory for an ``s3://`` run directory.
    """
    uri = settings.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri and (":" in uri or uri in URI_SCHEMELESS):
        return uri, None
    if uri:
        folder = Path(uri).expanduser().resolve()
    elif "://" in run_dir:
        folder = Path.cwd() / LOCAL_STORE
    else:
        folder = Path(run_dir).expanduser().resolve().parent / LOCAL_STORE
    return f"sqlite:///{folder / LOCAL_DB}", (folder / LOCAL_ARTIFACTS).as_uri()


def redact(text: str) -> str:
    """``text`` with the credentials of any URI in it masked, for logs, tags and error messages."""
    return re.sub(r"([A-Za-z][\w+.-]*://)[^/\s@]+@", r"\1***@", text)


def display_uri(uri: str) -> str:
    """A tracking URI as it may be printed: no user info, no query (tokens travel there too)."""
    parts = urlsplit(redact(uri))
    return urlunsplit(parts._replace(query="")) if parts.query else redact(uri)


def unavailable(settings: TrackingConfig, run_dir: str) -> str | None:
    """Why tracking cannot run on this machine (a message naming the fix), or None; checked before any stage."""
    needed = ["mlflow"]
    if resolve_store(settings, run_dir)[0].startswith("sqlite:"):
        needed += ["sqlalchemy", "alembic"]  # MLflow's SQL store; mlflow-skinny leaves them out
    for module in needed:
        try:
            __import__(module)
        except ImportError:
            return f"tracking.enabled: true needs {module}, which is not installed; install it with: {INSTALL_HINT}"
    return None


# -- what the run holds ----------------------------------------------------------------------------
def metric_key(name: str) -> str:
    """A name MLflow accepts as a metric or param key: ``HR@10`` -> ``HR_at_10``, other symbols -> ``_``."""
    name = re.sub(r"[^\w./\- :]", "_", name.replace("@", "_at_"))
    return name[:MAX_KEY]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def numeric_leaves(obj: Any, prefix: str) -> dict[str, float]:
    """Every finite number in nested dicts, by dotted key; lists (histories, level sizes) and text are left out."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(numeric_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    elif (number := _number(obj)) is not None and prefix:
        out[metric_key(prefix)] = number
    return out


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The resolved config as ``section.key`` -> text; lists as JSON, values past MLflow's limit cut and marked."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flat_params(value, name))
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if name == "tracking.uri" and value:
            text = display_uri(value)
        if len(text) > MAX_PARAM_VALUE:
            marker = f"... [{len(text)} chars; the whole config is the artifact config.json]"
            text = text[:MAX_PARAM_VALUE - len(marker)] + marker
        out[metric_key(name)] = text
    return out


def stage_metrics(stages: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``<stage>.wall_s`` (the run that made the outputs), ``<stage>.wall_s_now`` (0 for a skipped stage), what the
    stage cost the driver (``<stage>.driver.cpu_s``, ``.peak_rss_mib``) and the numbers of each stage's report, from
    the manifest's stage records."""
    out: dict[str, float] = {}
    for name, record in stages.items():
        for key in ("wall_s", "wall_s_now"):
            if (number := _number(record.get(key))) is not None:
                out[metric_key(f"{name}.{key}")] = number
        out.update(numeric_leaves(record.get("driver") or {}, f"{name}.driver"))
        out.update(numeric_leaves(record.get("report") or {}, name))
    return out


def eval_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``eval/metrics.json`` as ``eval.<model>.<subset>.<metric>`` with ``..._se`` beside each mean."""
    out: dict[str, float] = {}
    for model, entry in metrics.items():
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            if key.endswith("_se") and isinstance(value, dict):
                subset = key[:-len("_se")]
                out.update({f"{k}_se": v for k, v in numeric_leaves(value, f"eval.{model}.{subset}").items()})
            else:
                out.update(numeric_leaves(value, f"eval.{model}.{key}"))
    return out


def curves(store: Store, stages: dict[str, dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch histories as ``<stage>.epoch.<figure>`` -> [(epoch, value)]: the files a stage keeps them in and
    the lists of rows in a stage's report (SASRec keeps its history there)."""
    histories: dict[str, list[Any]] = {}
    for name, record in stages.items():
        for key, value in (record.get("report") or {}).items():
            if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
                histories[name if key == "history" else f"{name}.{key}"] = value
    for name, (path, key) in CURVE_FILES.items():
        if stages.get(name, {}).get("status") in ("ok", "skipped") and store.exists(path):
            found = store.read_json(path)
            found = found.get(key) if key is not None and isinstance(found, dict) else found
            if isinstance(found, list):
                histories[name] = found
    out: dict[str, list[tuple[int, float]]] = {}
    for name, rows in histories.items():
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                continue
            epoch = row.get("epoch")
            step = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else i
            for figure, value in numeric_leaves({k: v for k, v in row.items() if k != "epoch"}, "").items():
                out.setdefault(metric_key(f"{name}.epoch.{figure}"), []).append((step, value))
    return out


def artifact_files(store: Store) -> list[str]:
    """The run's plots and reports: ``manifest.json`` and the .png/.md/.json files at the top of every stage's
    folder (not model folders or checkpoints below them)."""
    found = [artifacts.MANIFEST] if store.exists(artifacts.MANIFEST) else []
    for outputs in (s.outputs for s in STAGES.values()):
        for folder in outputs:
            if store.is_dir(folder):
                found += [p for p in store.list(folder) if p.endswith(ARTIFACT_SUFFIXES)]
    return sorted(dict.fromkeys(found))


# -- logging ---------------------------------------------------------------------------------------
def _millis(stamp: str | None) -> int | None:
    try:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000) if stamp else None
    except ValueError:
        return None


def _experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:  # another job created it meanwhile
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def log_run(store: Store, settings: TrackingConfig, *, status: str = "FINISHED", error: str | None = None,
            config: dict[str, Any] | None = None, job: str | None = None) -> str:
    """Log the run directory ``store`` as one MLflow run and return its id.

    ``config`` (default: the manifest's) becomes the params; ``status`` is MLflow's (FINISHED, FAILED, KILLED); a
    failed or partial run logs what its run directory holds, with ``error`` as the tag ``cemg.error``.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    manifest = artifacts.read_manifest(store) if store.exists(artifacts.MANIFEST) else {}
    config = config if config is not None else manifest.get("config", {})
    job = job or manifest.get("job") or config.get("name") or "cemg"
    stages: dict[str, dict[str, Any]] = manifest.get("stages", {})
    uri, artifact_location = resolve_store(settings, store.root_uri)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    experiment = settings.experiment or job

    tags = {"cemg.job": job, "cemg.run_dir": redact(store.uri()), "cemg.status": status}
    if commit := manifest.get("git_commit"):
        tags.update({"cemg.git_commit": commit, "mlflow.source.git.commit": commit})
    if error:
        tags["cemg.error"] = redact(error)[:8000]
    tags.update({f"cemg.stage.{name}": str(record.get("status")) for name, record in stages.items()})
    tags.update({f"cemg.version.{k}": str(v) for k, v in manifest.get("versions", {}).items()})
    metrics = stage_metrics(stages)
    if store.exists(artifacts.METRICS):
        evaluated = store.read_json(artifacts.METRICS)
        metrics.update(eval_metrics(evaluated))
        splits = {e.get("split") for e in evaluated.values() if isinstance(e, dict) and e.get("split")}
        if splits:
            tags["cemg.eval_split"] = ",".join(sorted(splits))
    if store.exists(artifacts.DEFAULT_MODEL):
        chosen = store.read_json(artifacts.DEFAULT_MODEL)
        tags["cemg.default_model"] = str(chosen.get("model"))
        metrics.update(numeric_leaves(chosen.get("valid") or {}, "select_default.valid"))

    started = _millis(manifest.get("started"))
    run = client.create_run(_experiment_id(client, experiment, artifact_location), start_time=started,
                            tags={metric_key(k): v for k, v in tags.items()},
                            run_name=f"{job} {(manifest.get('started') or '')[:19]}".strip())
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        params = [Param(k, v) for k, v in flat_params(config).items()]
        for i in range(0, len(params), PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[i:i + PARAMS_PER_BATCH])
        points = [Metric(k, v, now, 0) for k, v in metrics.items()]
        points += [Metric(k, v, now, step) for k, series in curves(store, stages).items() for step, v in series]
        for i in range(0, len(points), METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=points[i:i + METRICS_PER_BATCH])
        with tempfile.TemporaryDirectory(prefix="cemg-tracking-") as tmp:
            (Path(tmp) / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
            for rel in artifact_files(store):
                data = store.read_bytes(rel)
                if len(data) > MAX_ARTIFACT_BYTES:
                    log.warning("tracking: %s is %d bytes, not logged as an artifact", store.uri(rel), len(data))
                    continue
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / rel).write_bytes(data)
            client.log_artifacts(run_id, tmp)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, status, end_time=_millis(manifest.get("finished")) if status == "FINISHED" else None)
    log.info("tracking: MLflow run %s (experiment %r, %s) at %s", run_id, experiment, status, display_uri(uri))
    return run_id


def log_job(cfg: JobConfig, status: str = "FINISHED", error: str | None = None) -> str:
    """Log a job's run directory with the job's resolved config as params."""
    from cemg_ray.store import Store

    return log_run(Store.for_job(cfg), cfg.tracking, status=status, error=error,
                   config=cfg.model_dump(mode="json"), job=cfg.name)


@contextmanager
def track(cfg: JobConfig) -> Iterator[None]:
    """Around a job's pipeline: log it when it ends, finished or not (nothing when ``tracking.enabled`` is off).

    A failed job's own error is the one that propagates; a failure to log it is only a warning. After a finished
    job a failure to log is an error: re-running the job skips every stage and logs again.
    """
    if not cfg.tracking.enabled:
        yield
        return
    try:
        yield
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        try:
            log_job(cfg, status, f"{type(exc).__name__}: {exc}")
        except Exception as log_exc:  # noqa: BLE001 - the job's own failure is the one to report
            log.warning("tracking: could not log the %s run: %s", status.lower(), redact(str(log_exc)))
        raise
    try:
        log_job(cfg, "FINISHED")
    except Exception as exc:  # noqa: BLE001 - MLflow's own errors and an unreachable server alike
        where = display_uri(resolve_store(cfg.tracking, cfg.run_dir)[0])
        raise TrackingError(f"the job finished but its MLflow run could not be logged to {where}: "
                            f"{redact(str(exc))}; run the same command again to log it (every stage is skipped)"
                            ) from exc
