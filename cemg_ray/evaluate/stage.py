"""The ``evaluate`` stage: every configured model through the same harness into one metrics.json."""

from __future__ import annotations

import importlib
import logging

from cemg_ray.data.split import load_split
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.evaluate.report import write_report
from cemg_ray.pipeline import StageContext, require, stage

log = logging.getLogger("cemg_ray")

# model name -> (stage that must have run, "module:function(cfg, store, **kwargs)", kwargs)
MODELS: dict[str, tuple[str, str, dict]] = {
    "popularity": ("popularity", "cemg_ray.evaluate.popularity:PopularityRecommender.load", {}),
    "sasrec": ("sasrec", "cemg_ray.evaluate.sasrec:SASRecRecommender.load", {}),
    "cemg": ("train", "cemg_ray.generate.recommender:load_recommender", {"cold_share": 0.0}),
    # the item-level generator with decode.cold_share of each list reserved for cold-start items
    "cemg_cold": ("train", "cemg_ray.generate.recommender:load_recommender", {}),
    "cemg_unconstrained": ("train", "cemg_ray.generate.recommender:load_recommender",
                           {"constrained": False, "cold_share": 0.0}),
}


def load_model(name: str, ctx: StageContext):  # noqa: ANN201 - a Recommender
    if name not in MODELS:
        raise KeyError(f"evaluate.models: unknown model {name!r}; known: {', '.join(MODELS)}")
    require(ctx.store, ctx.cfg, MODELS[name][0])
    return load_by_name(name, ctx.cfg, ctx.store)


def load_by_name(name: str, cfg, store):  # noqa: ANN001, ANN201 - JobConfig, Store -> Recommender
    """Load a registered model from a run directory (evaluation, serving and export share this)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    _, target, kwargs = MODELS[name]
    module, attr = target.split(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    rec = obj(cfg, store, **kwargs)
    rec.name = name
    return rec


def _upstream(cfg) -> tuple[str, ...]:  # noqa: ANN001 - JobConfig
    """Evaluation depends on the stages that produce the models it is asked to score."""
    return tuple(dict.fromkeys(["data"] + [MODELS[m][0] for m in cfg.evaluate.models if m in MODELS]))


@stage("evaluate", sections=("evaluate", "decode"), after=_upstream)
def run(ctx: StageContext) -> dict:
    """Evaluate each model in ``evaluate.models``; rows of models not re-run are kept."""
    cfg = ctx.cfg
    require(ctx.store, cfg, "data")
    split = load_split(ctx.store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    metrics = ctx.store.read_json("eval/metrics.json") if ctx.store.exists("eval/metrics.json") else {}
    for name in cfg.evaluate.models:
        rec = load_model(name, ctx)
        result = evaluate(rec, split, cfg.evaluate.split, cfg.evaluate.ks, cfg.evaluate.batch_size)
        metrics[name] = result
        log.info("evaluate %s: %s", name, {k: round(v, 4) for k, v in result["overall"].items()})
    ctx.store.write_json("eval/metrics.json", metrics)
    write_report(ctx.store, metrics, cfg.evaluate.ks)
    return {"metrics": ctx.store.uri("eval/metrics.json"), "models": list(metrics)}
