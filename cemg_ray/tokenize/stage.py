"""The ``tokenize`` stage: fuse item features (Eq. 2-3), train the RQ-VAE (Eq. 4), write unique codes.

``tokenize.scheme: mscgrec`` quantizes every modality on its own instead (``mscgrec.py``); the same artifacts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from cemg_ray import artifacts
from cemg_ray.data.split import Split, load_split
from cemg_ray.raytrain import run_config, train_in_worker
from cemg_ray.stagekit import StageContext, stage_hash
from cemg_ray.tokenize.codes import collision_stats, disambiguate, level_stats
from cemg_ray.tokenize.fusion import alpha_entropy
from cemg_ray.tokenize.fusion_report import initial_weights, write_fusion_analysis
from cemg_ray.tokenize.inputs import ItemInputs, load_inputs
from cemg_ray.tokenize.model import Tokenizer, save_tokenizer
from cemg_ray.tokenize.plots import alpha_figure, code_usage_figure, curves_figure

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig
    from cemg_ray.store import Store
    from cemg_ray.tokenize.config import TokenizeConfig

log = logging.getLogger("cemg_ray")


COLLAB_STAGES = {"lightgcn": "lightgcn", "sasrec": "sasrec"}  # tokenize.collab_source -> the stage writing it


def upstream(cfg: JobConfig) -> tuple[str, ...]:
    deps = ["data", "pca"]
    if cfg.tokenize.use_collab:
        deps.append(COLLAB_STAGES[cfg.tokenize.collab_source])
    return tuple(deps)


def planted_agreement(codes: np.ndarray, clusters: np.ndarray) -> dict:
    """P(same level-0 code | same planted cluster) against P(same level-0 code) over all pairs of distinct items.

    From scikit-learn's pair confusion matrix (counted from the contingency table), not items x items masks, which
    took 40 GB at 100,000 items.
    """
    from sklearn.metrics.cluster import pair_confusion_matrix

    n = len(codes)
    (_, diff_cluster_same_code), (same_cluster_diff_code, both) = pair_confusion_matrix(clusters, codes[:, 0])
    same_cluster = both + same_cluster_diff_code
    nan = float("nan")  # no pair to count (one item, or every cluster a singleton)
    return {"p_same_code_given_same_cluster": float(both / same_cluster) if same_cluster else nan,
            "p_same_code_any_pair": float((both + diff_cluster_same_code) / (n * (n - 1))) if n > 1 else nan}


def fit_in_worker(ctx: StageContext) -> tuple[dict[str, torch.Tensor], list[dict], dict]:
    """The fusion layer and RQ-VAE trained in a Ray Train worker (``tokenize.cpus_per_worker``). Returns (weights,
    epoch log, where the worker ran)."""
    cfg, store = ctx.cfg, ctx.store
    ctx.ensure_ray()
    state, meta = train_in_worker(
        "tokenize", "cemg_ray.tokenize.train:fit_from_store",
        {"cfg": cfg.tokenize.model_dump(), "store": ctx.worker_store(), "dataset": cfg.dataset.model_dump()},
        run_config(store, artifacts.TOKENIZE_CHECKPOINTS, f"tokenize-{stage_hash(cfg, 'tokenize')}"),
        cfg.tokenize.cpus_per_worker)
    store.delete(artifacts.TOKENIZE_CHECKPOINTS)  # the worker's hand-over only
    return state, meta["history"], meta["worker"]


def has_content(store: Store, cfg: TokenizeConfig) -> bool:
    """Whether some item has a text or image vector the tokenizer may use (from the pca stage's report)."""
    report, n = store.read_json(artifacts.PCA_REPORT), artifacts.num_items(store)
    return any(getattr(cfg, f"use_{m}") and report.get(m, {}).get("available") and report[m]["missing"] < n
               for m in ("image", "text"))


def run(ctx: StageContext) -> dict:
    """Train fusion + RQ-VAE jointly on all catalog items and assign every item a unique code (or, with
    ``tokenize.scheme: mscgrec``, quantize every modality on its own and concatenate the codes).

    The driver only dispatches: the training runs in a Ray Train worker, the encoding of the catalog (or the
    per-modality k-means of ``mscgrec``) in a Ray task, both with ``tokenize.cpus_per_worker``."""
    from cemg_ray.raytask import run_in_task

    tcfg = ctx.cfg.tokenize
    if tcfg.scheme == "mscgrec":
        return run_in_task(ctx, "cemg_ray.tokenize.stage:quantize_in_task", {"cfg": ctx.cfg}, cpus=tcfg.cpus_per_worker)
    if not tcfg.use_collab and not has_content(ctx.store, tcfg):
        raise ValueError("tokenize.use_collab: false, and no item has text or an image the tokenizer may use "
                         "(see features/report.json and tokenize.use_text / tokenize.use_image): no input is left; "
                         "set tokenize.use_collab: true")
    state, history, trained_on = fit_in_worker(ctx)
    report = run_in_task(ctx, "cemg_ray.tokenize.stage:encode_and_write",
                         {"cfg": ctx.cfg, "state": state, "history": history}, cpus=tcfg.cpus_per_worker)
    return {**report, "training_worker": trained_on}


def _inputs(store: Store, cfg: JobConfig) -> tuple[pa.Table, Split, ItemInputs]:
    tcfg = cfg.tokenize
    items = artifacts.read_items(store)
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    inputs = load_inputs(store, items.num_rows, split.train_counts, tcfg.use_image, tcfg.use_text,
                         tcfg.use_collab, tcfg.cold_collab_neighbours, collab_source=tcfg.collab_source)
    return items, split, inputs


def quantize_in_task(store: Store, cfg: JobConfig) -> dict:
    """The ``mscgrec`` scheme's work, in the stage's Ray task: k-means per modality and level, codes written."""
    from cemg_ray.tokenize.mscgrec import tokenize_mscgrec

    items, _, inputs = _inputs(store, cfg)
    return tokenize_mscgrec(store, cfg.tokenize, items, inputs)


def encode_and_write(store: Store, cfg: JobConfig, state: dict[str, torch.Tensor], history: list[dict]) -> dict:
    """The trained tokenizer encodes the catalog, in the stage's Ray task: codes made unique, figures and reports."""
    tcfg = cfg.tokenize
    items, split, inputs = _inputs(store, cfg)
    tok = Tokenizer(inputs.image.shape[1], inputs.collab.shape[1], tcfg)
    tok.load_state_dict(state)
    tok.eval()
    rq_codes, _, alpha = tok.encode(inputs.image, inputs.text, inputs.collab, inputs.present)
    with torch.no_grad():
        x, _ = tok.fuse(*(torch.as_tensor(a) for a in (inputs.image, inputs.text, inputs.collab, inputs.present)))
        recon = float(((tok.rqvae(x)["x_hat"] - x) ** 2).sum(1).mean())
        x_norm = float((x ** 2).sum(1).mean())
    full = disambiguate(rq_codes)
    level_sizes = [tcfg.codebook_size] * tcfg.num_levels + [int(full[:, -1].max()) + 1 + tcfg.disamb_headroom]
    both = inputs.present.all(1)
    ent = alpha_entropy(torch.as_tensor(alpha)).numpy()
    report = {
        "items": int(items.num_rows),
        "levels": level_stats(rq_codes, tcfg.codebook_size),
        "before_disambiguation": collision_stats(rq_codes),
        "after_disambiguation": collision_stats(full),
        "level_sizes": level_sizes,
        "reconstruction_mse": recon,
        "relative_reconstruction_error": recon / max(x_norm, 1e-12),
        "fusion": {
            "items_with_both_modalities": int(both.sum()),
            "alpha_visual_mean": float(alpha[both, 0].mean()) if both.any() else None,
            "alpha_visual_std": float(alpha[both, 0].std()) if both.any() else None,
            "entropy_bits_mean": float(ent[both].mean()) if both.any() else None,
            "entropy_bits_min": float(ent[both].min()) if both.any() else None,
            "modalities_present": {"image": int(inputs.present[:, 0].sum()), "text": int(inputs.present[:, 1].sum())},
            "collab_borrowed_from_neighbours": int(inputs.collab_borrowed.sum()),
        },
        "final_epoch": history[-1] if history else None,
    }
    if "cluster" in items.column_names:
        report["planted_clusters"] = planted_agreement(rq_codes, items.column("cluster").to_numpy())
    assert report["after_disambiguation"]["colliding_items"] == 0
    save_tokenizer(store, tok, tcfg, inputs.scales)
    # the fused content vector per item (Eq. 3): the generator's optional content input
    store.write_tensors(artifacts.FUSED, {"fused": x.numpy().astype(np.float32)})
    store.write_parquet(artifacts.CODES, pa.table({
        "item_idx": items.column("item_idx"), "item_id": items.column("item_id"),
        "codes": pa.array(full.astype(np.int32).tolist(), type=pa.list_(pa.int32()))}))
    artifacts.write_codes_meta(store, {"level_sizes": level_sizes, "num_levels": len(level_sizes),
                                       "codebook_size": tcfg.codebook_size, "scheme": "cemg"})
    store.write_json(artifacts.TOKENIZE_HISTORY, history)
    store.write_figure(artifacts.CODE_USAGE_FIGURE, code_usage_figure(full[:, :-1], tcfg.codebook_size))
    store.write_figure(artifacts.ALPHA_FIGURE, alpha_figure(alpha, both))
    report["fusion"]["breakdown"] = write_fusion_analysis(store, alpha, inputs, split.train_counts, items,
                                                          initial_weights(inputs, tcfg))
    store.write_figure(artifacts.TOKENIZE_CURVES, curves_figure(history))
    store.write_json(artifacts.TOKENIZE_REPORT, report)
    log.info("tokenize: %d items, collisions before disambiguation %.2f%%, level sizes %s", items.num_rows,
             100 * report["before_disambiguation"]["collision_rate"], level_sizes)
    return {k: report[k] for k in ("before_disambiguation", "level_sizes", "relative_reconstruction_error")}
