"""The evaluation stages: the baselines (popularity, SASRec) and ``evaluate``, every model through one harness."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cemg_ray import artifacts
from cemg_ray.artifacts import METRICS
from cemg_ray.data.split import load_split
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.evaluate.report import write_report
from cemg_ray.evaluate.sasrec import train_sasrec
from cemg_ray.pipeline import StageContext, require, stage
from cemg_ray.recommenders import Recommender, load, model_stage, stages_for

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig

log = logging.getLogger("cemg_ray")


def load_model(name: str, ctx: StageContext) -> Recommender:
    require(ctx.store, ctx.cfg, model_stage(name, "evaluate.models"))
    return load(name, ctx.cfg, ctx.store)


def _upstream(cfg: JobConfig) -> tuple[str, ...]:
    """Evaluation depends on the stages that produce the models it is asked to score."""
    return tuple(dict.fromkeys(["data", *stages_for(cfg.evaluate.models)]))


@stage("evaluate", sections=("evaluate", "decode"), after=_upstream)
def run(ctx: StageContext) -> dict:
    """Evaluate each model in ``evaluate.models``; rows of models not re-run are kept."""
    cfg = ctx.cfg
    split = load_split(ctx.store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    metrics = ctx.store.read_json(METRICS) if ctx.store.exists(METRICS) else {}
    for name in cfg.evaluate.models:
        rec = load_model(name, ctx)
        result = evaluate(rec, split, cfg.evaluate.split, cfg.evaluate.ks, cfg.evaluate.batch_size)
        metrics[name] = result
        log.info("evaluate %s: %s", name, {k: round(v, 4) for k, v in result["overall"].items()})
    ctx.store.write_json(METRICS, metrics)
    write_report(ctx.store, metrics, cfg.evaluate.ks)
    return {"metrics": ctx.store.committed_uri(METRICS), "models": list(metrics)}


@stage("popularity", sections=(), after=("data",))
def run_popularity(ctx: StageContext) -> dict:
    """Count training interactions per item (validation and test never counted)."""
    split = load_split(ctx.store, ctx.cfg.dataset.max_len, ctx.cfg.dataset.cold_start_max)
    counts = split.train_counts
    artifacts.write_popularity(ctx.store, counts)
    return {"items_with_interactions": int((counts > 0).sum()), "max_count": int(counts.max())}


@stage("sasrec", sections=("sasrec",), after=("data",))
def run_sasrec(ctx: StageContext) -> dict:
    """Train SASRec on the training split and keep its weights (safetensors) for evaluation."""
    from safetensors.torch import save

    split = load_split(ctx.store, ctx.cfg.dataset.max_len, ctx.cfg.dataset.cold_start_max)
    model, losses = train_sasrec(split, ctx.cfg.sasrec)
    ctx.store.write_bytes(artifacts.SASREC, save(model.state_dict()))
    return {"final_loss": losses[-1], "epochs": len(losses)}
