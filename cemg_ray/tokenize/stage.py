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
from cemg_ray.data.split import load_split
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


def fit_in_worker(ctx: StageContext, inputs: ItemInputs) -> tuple[Tokenizer, list[dict], dict]:
    """The fusion layer and RQ-VAE trained in a Ray Train worker (``tokenize.cpus_per_worker``), rebuilt here from
    the weights it reports: the driver only encodes the catalog with them. Returns (tokenizer, epoch log, where
    the worker ran)."""
    cfg, store = ctx.cfg, ctx.store
    ctx.ensure_ray()
    state, meta = train_in_worker(
        "tokenize", "cemg_ray.tokenize.train:fit_from_store",
        {"cfg": cfg.tokenize.model_dump(), "store": ctx.worker_store(), "dataset": cfg.dataset.model_dump()},
        run_config(store, artifacts.TOKENIZE_CHECKPOINTS, f"tokenize-{stage_hash(cfg, 'tokenize')}"),
        cfg.tokenize.cpus_per_worker)
    store.delete(artifacts.TOKENIZE_CHECKPOINTS)  # the worker's hand-over only
    tok = Tokenizer(inputs.image.shape[1], inputs.collab.shape[1], cfg.tokenize)
    tok.load_state_dict(state)
    return tok.eval(), meta["history"], meta["worker"]


def run(ctx: StageContext) -> dict:
    """Train fusion + RQ-VAE jointly on all catalog items and assign every item a unique code (or, with
    ``tokenize.scheme: mscgrec``, quantize every modality on its own and concatenate the codes)."""
    cfg, tcfg, store = ctx.cfg, ctx.cfg.tokenize, ctx.store
    items = artifacts.read_items(store)
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    inputs = load_inputs(store, items.num_rows, split.train_counts, tcfg.use_image, tcfg.use_text,
                         tcfg.use_collab, tcfg.cold_collab_neighbours, collab_source=tcfg.collab_source)
    if tcfg.scheme == "mscgrec":
        from cemg_ray.tokenize.mscgrec import tokenize_mscgrec

        return tokenize_mscgrec(store, tcfg, items, inputs)
    if not inputs.present.any() and not tcfg.use_collab:
        raise ValueError("tokenize.use_collab: false, and no item has text or an image the tokenizer may use "
                         "(see features/report.json and tokenize.use_text / tokenize.use_image): no input is left; "
                         "set tokenize.use_collab: true")
    tok, history, worker = fit_in_worker(ctx, inputs)
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
    return {**{k: report[k] for k in ("before_disambiguation", "level_sizes", "relative_reconstruction_error")},
            "worker": worker}
