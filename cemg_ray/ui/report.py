"""The run's report for the page's second view, read from the artifacts the stages wrote (docs/ARTIFACTS.md).

Every part is optional: a run that stopped before a stage, or a model without semantic IDs, shows what it has
and says what is missing, instead of failing the whole view.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cemg_ray import artifacts
from cemg_ray.store import Store

# the run's own figures the page may show, by name: a fixed list, so no request can name another path
FIGURES = {"generator_curves": artifacts.GENERATOR_CURVES, "ndcg": artifacts.EVAL_FIGURE,
           "code_usage": artifacts.CODE_USAGE_FIGURE, "fusion": artifacts.FUSION_FIGURE,
           "alpha": artifacts.ALPHA_FIGURE, "tokenizer_curves": artifacts.TOKENIZE_CURVES}
CURVE_KEYS = ("loss", "valid_ndcg10", "valid_hr10")  # what the generator logs per epoch (generate/history.json)
ALPHA_BINS = 10


def _json(store: Store, rel: str) -> Any:
    return store.read_json(rel) if store.exists(rel) else None


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities (an empty cold-start slice, say) become null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metrics(store: Store) -> dict[str, Any] | None:
    """Per model: overall and cold-start figures with their standard errors; which list the run chose."""
    found = _json(store, artifacts.METRICS)
    if found is None:
        return None
    keep = ("overall", "overall_se", "cold_start", "cold_start_se", "users", "cold_start_users", "exclude_seen",
            "split", "model_version")
    chosen = _json(store, artifacts.DEFAULT_MODEL)
    return {"models": {name: {k: m.get(k) for k in keep} for name, m in found.items()},
            "default": chosen.get("model") if chosen else None,
            "selected_on": chosen.get("selected_on") if chosen else None,
            "selection_metric": chosen.get("metric") if chosen else None}


def training_curve(store: Store) -> dict[str, Any] | None:
    """The generator's per-epoch log: loss and validation NDCG/HR@10 (the early-stopping signal)."""
    history = _json(store, artifacts.GENERATOR_HISTORY)
    if not history:
        return None
    report = _json(store, artifacts.GENERATOR_REPORT) or {}
    return {"epochs": [row.get("epoch", n) for n, row in enumerate(history)],
            "series": {key: [row.get(key) for row in history] for key in CURVE_KEYS if any(key in r for r in history)},
            "best_epoch": report.get("best_epoch"), "train_s": report.get("train_s")}


def code_usage(store: Store, per_level: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Utilisation, perplexity and collisions per level (tokenize report) beside the counts per code value."""
    report = _json(store, artifacts.TOKENIZE_REPORT)
    if report is None and not per_level:
        return None
    report = report or {}
    return {"levels": report.get("levels"), "level_sizes": report.get("level_sizes"),
            "before_disambiguation": report.get("before_disambiguation"),
            "after_disambiguation": report.get("after_disambiguation"),
            "relative_reconstruction_error": report.get("relative_reconstruction_error"),
            "counts": per_level}


def fusion(store: Store) -> dict[str, Any] | None:
    """The collaborative-guided fusion's weights: their spread over items and by item popularity."""
    breakdown = ((_json(store, artifacts.TOKENIZE_REPORT) or {}).get("fusion") or {}).get("breakdown")
    if not store.exists(artifacts.FUSION_WEIGHTS):
        return {"breakdown": breakdown, "histogram": None} if breakdown else None
    table = store.read_parquet(artifacts.FUSION_WEIGHTS)
    alpha = np.asarray(table.column("alpha_visual").to_numpy(zero_copy_only=False), dtype=np.float64)
    if "has_image" in table.column_names and "has_text" in table.column_names:
        both = table.column("has_image").to_numpy(zero_copy_only=False) & table.column("has_text").to_numpy(
            zero_copy_only=False)
        alpha = alpha[both]  # an item with one modality has a weight of 0 or 1 by construction, not a learned one
    alpha = alpha[np.isfinite(alpha)]
    counts, edges = np.histogram(alpha, bins=ALPHA_BINS, range=(0.0, 1.0))
    return {"items": int(len(alpha)), "alpha_visual_mean": float(alpha.mean()) if len(alpha) else None,
            "alpha_visual_std": float(alpha.std()) if len(alpha) else None,
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}, "breakdown": breakdown}


def stages(store: Store) -> dict[str, Any]:
    """Each stage's status and wall time, from the manifest."""
    manifest = artifacts.read_manifest(store)
    return {name: {"status": s.get("status"), "wall_s": s.get("wall_s")}
            for name, s in (manifest.get("stages") or {}).items()}


def build(store: Store, per_level: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole report; ``per_level`` is the code usage computed from the run's semantic IDs (``RunView``)."""
    return _clean({
        "metrics": metrics(store), "training_curve": training_curve(store), "code_usage": code_usage(store, per_level),
        "fusion": fusion(store), "stages": stages(store),
        "figures": [name for name, rel in FIGURES.items() if store.exists(rel)],
    })
