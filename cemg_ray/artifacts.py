"""The run directory's contract in one place: which stage owns which paths (docs/ARTIFACTS.md).

Stages, serving, export and tools that copy or inspect a run directory name artifacts through these
constants instead of string literals, so that a path changes in one module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cemg_ray.store import Store

ITEMS = "data/items.parquet"
SEQUENCES = "data/sequences.parquet"
DATA_REPORT = "data/report.json"
POPULARITY = "baselines/popularity.json"
SASREC = "baselines/sasrec.safetensors"
PCA_MODEL = "pca/model.safetensors"
PCA_REDUCED = "pca/reduced.safetensors"
LIGHTGCN_EMB = "lightgcn/item_emb.safetensors"
TOKENIZER_WEIGHTS = "tokenize/model.safetensors"
TOKENIZER_CONFIG = "tokenize/model.json"
CODES = "tokenize/codes.parquet"
CODES_META = "tokenize/meta.json"
FUSED = "tokenize/fused.safetensors"
FUSION_WEIGHTS = "tokenize/fusion.parquet"
TOKENIZE_REPORT = "tokenize/report.json"
GENERATOR_MODEL = "generate/model"
METRICS = "eval/metrics.json"
MANIFEST = "manifest.json"
STAGE_MARKERS = "_stages"
PREVIOUS = "_previous"  # a completed stage's outputs while it re-runs, restored if the re-run fails

# what each stage writes (a folder or a file) besides its marker ``_stages/<stage>.json``
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "popularity": (POPULARITY,),
    "sasrec": (SASREC,),
    "features": ("features",),
    "pca": ("pca",),
    "lightgcn": ("lightgcn",),
    "tokenize": ("tokenize",),
    "train": ("generate",),
    "evaluate": ("eval",),
    "export": (),  # writes to export.output, outside the run directory
}


def stage_marker(stage: str) -> str:
    return f"{STAGE_MARKERS}/{stage}.json"


def read_marker(store: Store, stage: str) -> dict[str, Any] | None:
    """A stage's completion record, or None when it is missing or unreadable (both mean "not done")."""
    path = stage_marker(stage)
    if not store.exists(path):
        return None
    try:
        return store.read_json(path)
    except Exception:  # noqa: BLE001 - a corrupt marker means "not done"
        return None
