"""The evaluation stages: the baselines (popularity, SASRec) and ``evaluate``, every model through one harness."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cemg_ray import artifacts
from cemg_ray.artifacts import METRICS
from cemg_ray.data.split import Split, load_split
from cemg_ray.evaluate.distributed import Ask
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.evaluate.report import write_report
from cemg_ray.generate.policy import LEGACY_MODELS, PolicyError
from cemg_ray.raytrain import run_config, train_in_worker
from cemg_ray.recommenders import UnknownModelError, load, model_stage, model_version, stages_for
from cemg_ray.stagekit import StageContext, require, stage_hash
from cemg_ray.store import Store

if TYPE_CHECKING:
    from cemg_ray.config import DatasetConfig, JobConfig

log = logging.getLogger("cemg_ray")


def score(asks: list[Ask], ctx: StageContext, split: Split) -> list[dict[str, tuple[dict, str]]]:
    """For each ask (lists on a split at some cutoffs), {model: (metrics row, model version)}: on a Ray Data actor
    pool (up to ``evaluate.num_actors``, 2 by default) whose actors rank every list of every ask with the run's
    one predictor in one pass over the users, or in this process (``num_actors: 0``)."""
    cfg = ctx.cfg
    for ask in asks:  # every model's stage first: a missing one fails before any ranking starts
        for ref in ask.models:
            require(ctx.store, cfg, model_stage(ref, ask.where))
    if cfg.evaluate.num_actors:
        from cemg_ray.evaluate.distributed import evaluate_on_actors

        return evaluate_on_actors(cfg, ctx.store.committed(), asks, split)
    out = []
    for ask in asks:
        rows = {}
        for ref in dict.fromkeys(ask.models):
            rec = load(ref, cfg, ctx.store, ask.where)
            rows[ref] = (evaluate(rec, split, ask.split, ask.ks, cfg.evaluate.batch_size,
                                  exclude_seen=cfg.evaluate.exclude_seen), rec.model_version)
        out.append(rows)
    return out


def upstream(cfg: JobConfig) -> tuple[str, ...]:
    """Evaluation depends on the stages that produce the models it is asked to score."""
    floor = cfg.evaluate.select_cold_start_floor
    refs = cfg.evaluate.models + cfg.evaluate.select_default + ([floor.reference] if floor else [])
    return tuple(dict.fromkeys(["data", *stages_for(refs, cfg)]))


def run(ctx: StageContext) -> dict:
    """Choose the default list on validation (``evaluate.select_default``), then evaluate each model in
    ``evaluate.models`` and the chosen list on ``evaluate.split``; rows of models not re-run are kept. When every
    candidate is among the models, both are ranked in one pass (the chosen list's test row is then one of them)."""
    cfg = ctx.cfg
    split = load_split(ctx.store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    models = list(cfg.evaluate.models)
    metrics, dropped = kept_rows(ctx.store, models, cfg)
    scored: dict[str, tuple[dict, str]] | None = None
    if cfg.evaluate.select_default:  # chosen on validation first, so that the default list always has a test row
        one_pass = set(cfg.evaluate.select_default) <= set(models)
        selection = selection_ask(cfg)
        evaluation = Ask(cfg.evaluate.split, models, cfg.evaluate.ks)
        results = score([selection, evaluation] if one_pass else [selection], ctx, split)
        choice = choose_default(cfg, results[0])
        ctx.store.write_json(artifacts.DEFAULT_MODEL, choice)
        log.info("evaluate: the default list is %s (validation NDCG@10 %.4f)", choice["model"],
                 choice["valid"][choice["model"]]["NDCG@10"])
        if one_pass:
            scored = results[1]
        elif choice["model"] not in models and choice["model"] not in metrics:
            models.append(choice["model"])
    if scored is None:
        scored = score([Ask(cfg.evaluate.split, models, cfg.evaluate.ks)], ctx, split)[0]
    for name, (result, version) in scored.items():
        metrics[name] = {**result, "model_version": version}
        log.info("evaluate %s: %s", name, {k: round(v, 4) for k, v in result["overall"].items()})
    ctx.store.write_json(METRICS, metrics)
    write_report(ctx.store, metrics, cfg.evaluate.ks)
    return {"metrics": ctx.store.committed_uri(METRICS), "models": list(metrics), "dropped_rows": dropped}


def selection_ask(cfg: JobConfig) -> Ask:
    """The lists the default is chosen among, and the cold-start floor's reference, on the validation split."""
    floor = cfg.evaluate.select_cold_start_floor
    names = list(cfg.evaluate.select_default)
    if floor is not None and floor.reference not in names:
        names.append(floor.reference)
    return Ask("valid", names, [10], "evaluate.select_default")


def choose_default(cfg: JobConfig, scored: dict[str, tuple[dict, str]]) -> dict:
    """The best candidate list by validation NDCG@10, then HR@10 (``scored``: the selection ask's rows, never the
    test split's): the list users get when they name none. With ``evaluate.select_cold_start_floor``, only the lists
    whose cold-start HR@10 reaches the floor (a ratio of a reference model's, on the same split) are eligible."""
    floor = cfg.evaluate.select_cold_start_floor
    valid = {name: {**res["overall"], "se": res["overall_se"], "cold_start": res["cold_start"]}
             for name, (res, _) in scored.items()}
    candidates = cfg.evaluate.select_default
    choice: dict = {"selected_on": "valid", "metric": "NDCG@10"}
    if floor is not None:
        need = floor.ratio * valid[floor.reference]["cold_start"]["HR@10"]
        eligible = [n for n in candidates if valid[n]["cold_start"]["HR@10"] >= need]
        choice["cold_start_floor"] = {"reference": floor.reference, "ratio": floor.ratio, "HR@10": need,
                                      "floor_met": bool(eligible), "vacuous": need == 0}
        if need == 0:  # a multiple of zero admits every list: say so rather than report a floor met
            log.warning("evaluate: %s hits no cold-start target on the validation split, so the cold-start floor "
                        "admits every list", floor.reference)
        if not eligible:
            log.warning("evaluate: no list in evaluate.select_default reaches %.2fx %s's validation cold-start "
                        "HR@10 (%.4f); the default is the best overall", floor.ratio, floor.reference, need)
        candidates = eligible or candidates
    best = max(candidates, key=lambda n: (valid[n]["NDCG@10"], valid[n]["HR@10"]))
    return {"model": best, **choice, "valid": valid}


def kept_rows(store: Store, rerun: list[str], cfg: JobConfig | None = None) -> tuple[dict, list[str]]:
    """The committed metrics rows of models not re-run now, each kept only while its model is the one the run
    directory holds (same ``model_version``); a row of a model retrained since, removed from the registry or
    recorded without a version is dropped with a message naming it. Reads the last commit, not the staged
    view (which shows this stage's empty staging folder)."""
    committed = store.committed()
    previous = committed.read_json(METRICS) if committed.exists(METRICS) else {}
    kept, dropped = {}, []
    for old_name, row in previous.items():
        name = LEGACY_MODELS.get(old_name, old_name)  # rows written when policies were models: their new names
        if name in rerun:
            continue
        try:
            current = model_version(name, committed, cfg)
        except (UnknownModelError, PolicyError):
            current = None
        if current is not None and row.get("model_version") == current:
            kept[name] = row
            continue
        dropped.append(name)
        log.warning("evaluate: dropping the earlier row of %s from %s: %s", name, METRICS,
                    "the model is no longer registered" if current is None else
                    f"it scored {row.get('model_version', 'an unrecorded version')}, the run directory now "
                    f"holds {current}; add it to evaluate.models to score it again")
    return kept, dropped


def run_popularity(ctx: StageContext) -> dict:
    """Count training interactions per item (validation and test never counted), in a Ray task: the split it reads
    grows with the interactions."""
    from cemg_ray.raytask import run_in_task

    return run_in_task(ctx, "cemg_ray.evaluate.stage:count_popularity", {"dataset": ctx.cfg.dataset},
                       cpus=ctx.cfg.dataset.cpus)


def count_popularity(store: Store, dataset: DatasetConfig) -> dict:
    """The ``popularity`` stage's work: per-item training counts, written for the baseline and serving's fallback."""
    counts = load_split(store, dataset.max_len, dataset.cold_start_max).train_counts
    artifacts.write_popularity(store, counts)
    return {"items_with_interactions": int((counts > 0).sum()), "max_count": int(counts.max())}


def run_sasrec(ctx: StageContext) -> dict:
    """Train SASRec on the training split in a Ray Train worker and keep its weights (safetensors) for
    evaluation; the driver only writes what the worker reported."""
    from safetensors.torch import save

    ctx.ensure_ray()
    cfg, store = ctx.cfg, ctx.store
    state, meta = train_in_worker(
        "sasrec", "cemg_ray.evaluate.sasrec:train_from_store",
        {"cfg": cfg.sasrec.model_dump(), "store": ctx.worker_store(), "dataset": cfg.dataset.model_dump()},
        run_config(store, artifacts.SASREC_CHECKPOINTS, f"sasrec-{stage_hash(cfg, 'sasrec')}"),
        cfg.sasrec.cpus_per_worker, cfg.sasrec.use_gpu)
    history, worker = meta["history"], meta["worker"]
    ctx.store.write_bytes(artifacts.SASREC, save(state))
    ctx.store.delete(artifacts.SASREC_CHECKPOINTS)  # the worker's hand-over only: the weights are now in place
    best = max(history, key=lambda row: row["valid_NDCG@10"])
    return {"final_loss": history[-1]["loss"], "epochs": len(history), "best_epoch": best["epoch"],
            "valid_NDCG@10": best["valid_NDCG@10"], "valid_HR@10": best["valid_HR@10"],
            "train_s": round(sum(row["train_s"] for row in history), 1), "history": history, "worker": worker}
