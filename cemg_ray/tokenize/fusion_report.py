"""Where the collaborative-guided fusion weights go, item by item (issue: does alpha move per item?).

The stage's report gives the mean and spread of alpha_visual; this module breaks it down by what a
reader would suspect drives it: item popularity (the guide is the collaborative embedding, so items
with more interactions have a more informed query) and genre or category (Animation posters say more
than Drama posters). It works on any run directory that has a trained tokenizer, so a run made before
the analysis existed can be analysed without re-training (``cemg-ray codes fusion JOB.yaml``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from cemg_ray import artifacts
from cemg_ray.plotting import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cemg_ray.config import JobConfig
    from cemg_ray.store import Store
    from cemg_ray.tokenize.config import TokenizeConfig
    from cemg_ray.tokenize.inputs import ItemInputs

# training interactions per item; the first bucket is the paper's cold-start definition (<= 5)
POPULARITY_EDGES = (0, 5, 20, 50, 150)
MIN_GENRE_ITEMS = 20


def fusion_table(alpha: np.ndarray, present: np.ndarray, train_counts: np.ndarray,
                 genres: list[list[str]] | None = None, image_norm: np.ndarray | None = None,
                 text_norm: np.ndarray | None = None) -> pa.Table:
    """One row per item: its weights, their entropy (bits), which modalities it has, its training count and
    (when given) the norms of its scaled image and text vectors, the layer's inputs."""
    a = np.asarray(alpha, dtype=np.float64)
    p = np.clip(a, 1e-12, 1.0)
    entropy = -(a * np.log2(p)).sum(1)
    cols: dict[str, Any] = {
        "item_idx": np.arange(len(a), dtype=np.int32),
        "alpha_visual": a[:, 0].astype(np.float32), "alpha_text": a[:, 1].astype(np.float32),
        "entropy_bits": entropy.astype(np.float32),
        "has_image": np.asarray(present[:, 0], dtype=bool), "has_text": np.asarray(present[:, 1], dtype=bool),
        "train_count": np.asarray(train_counts, dtype=np.int64),
    }
    if image_norm is not None and text_norm is not None:
        cols["image_norm"] = np.asarray(image_norm, dtype=np.float32)
        cols["text_norm"] = np.asarray(text_norm, dtype=np.float32)
    if genres is not None:
        cols["genres"] = pa.array([list(g or []) for g in genres], type=pa.list_(pa.string()))
    return pa.table(cols)


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Rank correlation with ties averaged (training counts tie a lot); None when either side is constant."""
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)


def _stats(x: np.ndarray) -> dict[str, float | int]:
    if len(x) == 0:
        return {"items": 0}
    q = np.quantile(x, [0.05, 0.5, 0.95])
    return {"items": int(len(x)), "mean": float(x.mean()), "std": float(x.std()),
            "p05": float(q[0]), "median": float(q[1]), "p95": float(q[2])}


def popularity_buckets(counts: np.ndarray) -> list[tuple[str, np.ndarray]]:
    edges = list(POPULARITY_EDGES) + [np.inf]
    out = [("0-5 (cold)", counts <= 5)]
    for lo, hi in zip(edges[1:-1], edges[2:]):
        label = f"{lo + 1}-{int(hi)}" if np.isfinite(hi) else f">{lo}"
        out.append((label, (counts > lo) & (counts <= hi)))
    return out


def fusion_breakdown(table: pa.Table) -> dict[str, Any]:
    """alpha_visual and entropy over the items that have both modalities, overall, by popularity, by genre."""
    both = table.column("has_image").to_numpy(zero_copy_only=False) & \
        table.column("has_text").to_numpy(zero_copy_only=False)
    av = table.column("alpha_visual").to_numpy()[both]
    ent = table.column("entropy_bits").to_numpy()[both]
    counts = table.column("train_count").to_numpy()[both]
    out: dict[str, Any] = {"items_with_both": int(both.sum()), "alpha_visual": _stats(av), "entropy_bits": _stats(ent)}
    if len(av) > 2 and np.std(av) > 0 and np.std(counts) > 0:
        out["spearman_alpha_visual_vs_train_count"] = _spearman(av, counts)
    for col in ("image_norm", "text_norm"):  # what the weights follow when not genre or popularity
        if col in table.column_names and len(av) > 2 and np.std(av) > 0:
            out[f"spearman_alpha_visual_vs_{col}"] = _spearman(av, table.column(col).to_numpy()[both])
    out["by_popularity"] = [{"train_interactions": label, "alpha_visual": _stats(av[m]),
                             "entropy_bits_mean": float(ent[m].mean()) if m.any() else None}
                            for label, m in popularity_buckets(counts)]
    if "genres" in table.column_names:
        genres = [g for g, keep in zip(table.column("genres").to_pylist(), both) if keep]
        names = sorted({g for gs in genres for g in gs})
        by_genre = {}
        for name in names:
            m = np.array([name in gs for gs in genres])
            if m.sum() >= MIN_GENRE_ITEMS:
                by_genre[name] = {"alpha_visual": _stats(av[m]), "entropy_bits_mean": float(ent[m].mean())}
        out["by_genre"] = dict(sorted(by_genre.items(), key=lambda kv: -kv[1]["alpha_visual"]["mean"]))
    return out


def movement_from_init(alpha: np.ndarray, alpha_init: np.ndarray, present: np.ndarray) -> dict[str, float]:
    """How far training moved the weights: the spread a freshly initialised layer already gives the same
    items, and the correlation of the two. A spread that training did not change (correlation near 1) is
    the random projection's, not something the layer learned."""
    both = present.all(1)
    a, b = alpha[both, 0], alpha_init[both, 0]
    corr = float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and a.std() > 0 and b.std() > 0 else None
    return {"alpha_visual_std_trained": float(a.std()) if len(a) else 0.0,
            "alpha_visual_std_at_init": float(b.std()) if len(b) else 0.0,
            "correlation_trained_vs_init": corr,
            "mean_abs_change": float(np.abs(a - b).mean()) if len(a) else 0.0}


def write_fusion_analysis(store: Store, alpha: np.ndarray, inputs: ItemInputs, train_counts: np.ndarray,
                          items: pa.Table, alpha_init: np.ndarray | None = None) -> dict[str, Any]:
    """Write ``tokenize/fusion.parquet`` and ``tokenize/fusion.png``; returns the breakdown for the report."""
    genres = items.column("genres").to_pylist() if "genres" in items.column_names else None
    present = inputs.present
    table = fusion_table(alpha, present, train_counts, genres, np.linalg.norm(inputs.image, axis=1),
                         np.linalg.norm(inputs.text, axis=1))
    breakdown = fusion_breakdown(table)
    if alpha_init is not None:
        breakdown["movement_from_init"] = movement_from_init(alpha, alpha_init, present)
    store.write_parquet(artifacts.FUSION_WEIGHTS, table)
    store.write_figure(artifacts.FUSION_FIGURE, fusion_figure(table, breakdown))
    return breakdown


def analyse_run(cfg: JobConfig, store: Store) -> dict[str, Any]:
    """Recompute the weights of a trained tokenizer on its run's inputs and write the analysis."""
    import torch

    from cemg_ray.data.split import load_split
    from cemg_ray.tokenize.inputs import load_inputs
    from cemg_ray.tokenize.model import load_tokenizer

    saved = load_tokenizer(store)
    tcfg = saved.cfg
    items = artifacts.read_items(store)
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    inputs = load_inputs(store, items.num_rows, split.train_counts, tcfg.use_image, tcfg.use_text,
                         tcfg.use_collab, tcfg.cold_collab_neighbours, scales=saved.scales,
                         collab_source=tcfg.collab_source)
    tensors = [torch.as_tensor(a) for a in (inputs.image, inputs.text, inputs.collab, inputs.present)]
    with torch.no_grad():
        alpha = saved.model.fusion.weights(*tensors).numpy()
    alpha_init = initial_weights(inputs, tcfg)
    return write_fusion_analysis(store, alpha, inputs, split.train_counts, items, alpha_init)


def initial_weights(inputs: ItemInputs, tcfg: TokenizeConfig) -> np.ndarray:
    """The weights of the fusion layer as ``fit_tokenizer`` initialises it (same seed), before any training."""
    import torch

    from cemg_ray.tokenize.model import Tokenizer

    torch.manual_seed(tcfg.seed)
    fresh = Tokenizer(inputs.image.shape[1], inputs.collab.shape[1], tcfg)
    with torch.no_grad():
        return fresh.fusion.weights(*(torch.as_tensor(a) for a in (inputs.image, inputs.text, inputs.collab,
                                                                 inputs.present))).numpy()


def fusion_figure(table: pa.Table, breakdown: dict[str, Any]) -> Figure:
    """Three panels: the alpha_visual histogram, alpha_visual by popularity bucket, mean alpha_visual by genre."""
    plt = pyplot()

    both = table.column("has_image").to_numpy(zero_copy_only=False) & \
        table.column("has_text").to_numpy(zero_copy_only=False)
    av = table.column("alpha_visual").to_numpy()[both]
    counts = table.column("train_count").to_numpy()[both]
    genres = breakdown.get("by_genre") or {}
    fig, axes = plt.subplots(1, 3 if genres else 2, figsize=(13 if genres else 8.5, 3.4))
    axes[0].hist(av, bins=40, range=(0, 1), color="tab:orange")
    axes[0].set_xlabel("alpha_visual (alpha_text = 1 - alpha_visual)")
    axes[0].set_ylabel("items with poster and text")
    axes[0].set_title(f"per-item weights (n={len(av)}, std {av.std() if len(av) else 0:.3f})", fontsize=9)
    buckets = [(label, av[m]) for label, m in popularity_buckets(counts) if m.any()]
    axes[1].boxplot([b for _, b in buckets], showfliers=False)
    axes[1].set_xticks(range(1, len(buckets) + 1), [f"{label}\n({len(b)})" for label, b in buckets], fontsize=7)
    axes[1].set_xlabel("training interactions of the item")
    axes[1].set_ylabel("alpha_visual")
    axes[1].set_title("by popularity", fontsize=9)
    if genres:
        names = list(genres)
        means = [genres[g]["alpha_visual"]["mean"] for g in names]
        stds = [genres[g]["alpha_visual"]["std"] for g in names]
        axes[2].barh(range(len(names)), means, xerr=stds, color="tab:blue", alpha=0.8)
        axes[2].set_yticks(range(len(names)), [f"{g} ({genres[g]['alpha_visual']['items']})" for g in names],
                           fontsize=7)
        axes[2].invert_yaxis()
        axes[2].set_xlabel("mean alpha_visual (+- std)")
        axes[2].set_title(f"by genre (>= {MIN_GENRE_ITEMS} items)", fontsize=9)
    fig.tight_layout()
    return fig
