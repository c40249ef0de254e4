"""The ``evaluate`` stage: every configured model through the same harness into one metrics.json."""

from __future__ import annotations

import logging

from cemg_ray.artifacts import METRICS
from cemg_ray.data.split import load_split
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.evaluate.report import write_report
from cemg_ray.pipeline import StageContext, require, stage
from cemg_ray.recommenders import Recommender, load, model_stage, stages_for

log = logging.getLogger("cemg_ray")

def load_model(name: str, ctx: StageContext) -> Recommender:
    require(ctx.store, ctx.cfg, model_stage(name, "evaluate.models"))
    return load(name, ctx.cfg, ctx.store)


def _upstream(cfg) -> tuple[str, ...]:  # noqa: ANN001 - JobConfig
    """Evaluation depends on the stages that produce the models it is asked to score."""
    return tuple(dict.fromkeys(["data", *stages_for(cfg.evaluate.models)]))


@stage("evaluate", sections=("evaluate", "decode"), after=_upstream)
def run(ctx: StageContext) -> dict:
    """Evaluate each model in ``evaluate.models``; rows of models not re-run are kept."""
    cfg = ctx.cfg
    require(ctx.store, cfg, "data")
    split = load_split(ctx.store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    metrics = ctx.store.read_json(METRICS) if ctx.store.exists(METRICS) else {}
    for name in cfg.evaluate.models:
        rec = load_model(name, ctx)
        result = evaluate(rec, split, cfg.evaluate.split, cfg.evaluate.ks, cfg.evaluate.batch_size)
        metrics[name] = result
        log.info("evaluate %s: %s", name, {k: round(v, 4) for k, v in result["overall"].items()})
    ctx.store.write_json(METRICS, metrics)
    write_report(ctx.store, metrics, cfg.evaluate.ks)
    return {"metrics": ctx.store.uri(METRICS), "models": list(metrics)}
