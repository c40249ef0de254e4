"""The run directory's contract in one place: which stage owns which paths (docs/ARTIFACTS.md).

Stages, serving, export and tools that copy or inspect a run directory name artifacts through these
constants instead of string literals, so that a path changes in one module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from cemg_ray.store import Store

# data
ITEMS = "data/items.parquet"
SEQUENCES = "data/sequences.parquet"
DATA_REPORT = "data/report.json"
# popularity, sasrec
POPULARITY = "baselines/popularity.json"
SASREC = "baselines/sasrec.safetensors"
SASREC_CHECKPOINTS = "baselines/sasrec_ray"  # the Ray Train worker's checkpoint, in the stage's staging area only
# tokenize: the tokenizer's Ray Train worker's checkpoint (in the stage's staging area only)
TOKENIZE_CHECKPOINTS = "tokenize/ray"
# features, pca
FEATURES_REPORT = "features/report.json"
PCA_MODEL = "pca/model.safetensors"
PCA_REDUCED = "pca/reduced.safetensors"
PCA_REPORT = "pca/report.json"
# lightgcn
LIGHTGCN_EMB = "lightgcn/item_emb.safetensors"
LIGHTGCN_CHECKPOINTS = "lightgcn/ray"
LIGHTGCN_REPORT = "lightgcn/report.json"
# tokenize
TOKENIZER_WEIGHTS = "tokenize/model.safetensors"
TOKENIZER_CONFIG = "tokenize/model.json"
CODES = "tokenize/codes.parquet"
CODES_META = "tokenize/meta.json"
FUSED = "tokenize/fused.safetensors"
FUSION_WEIGHTS = "tokenize/fusion.parquet"
FUSION_FIGURE = "tokenize/fusion.png"
ADDED_CODES = "tokenize/added_codes.parquet"  # codes of items added after training (cemg-ray codes assign)
TOKENIZE_HISTORY = "tokenize/history.json"
TOKENIZE_CURVES = "tokenize/training.png"
CODE_USAGE_FIGURE = "tokenize/code_usage.png"
ALPHA_FIGURE = "tokenize/alpha.png"
TOKENIZE_REPORT = "tokenize/report.json"
# train
GENERATOR_MODEL = "generate/model"
GENERATOR_TRAIN_DATA = "generate/data/train.safetensors"
GENERATOR_VALID_DATA = "generate/data/valid.safetensors"
GENERATOR_ITEM_COUNTS = "generate/data/train_counts.safetensors"  # interactions per item (item_ids)
GENERATOR_CHECKPOINTS = "generate/checkpoints"
GENERATOR_HISTORY = "generate/history.json"
GENERATOR_CURVES = "generate/curves.png"
GENERATOR_REPORT = "generate/report.json"
# evaluate
METRICS = "eval/metrics.json"
DEFAULT_MODEL = "eval/default_model.json"  # the list chosen on validation (evaluate.select_default)
EVAL_REPORT = "eval/report.md"
EVAL_FIGURE = "eval/ndcg.png"
# the run
MANIFEST = "manifest.json"
# a dataset in the ``parquet`` format (a user's input, not a run artifact): the file names inside its folder
PARQUET_DATASET_INTERACTIONS = "interactions.parquet"
PARQUET_DATASET_ITEMS = "items.parquet"
STAGE_MARKERS = "_stages"
PREVIOUS = "_previous"  # the last good outputs of a stage for the moment its new ones are swapped in
RUN_LOGS = "_logs"  # each ``cemg-ray run``'s log file (cemg_ray/console.py), beside the stages' outputs
STAGING = "_staging"  # a running stage's outputs (``_staging/<stage>/<output>``) until they commit
STAGING_HASH = "config_hash"  # the config hash of the attempt that owns a staging area


def features_file(modality: str) -> str:
    """The features stage's table for one modality (``image`` or ``text``)."""
    return f"features/{modality}.parquet"


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


class ArtifactError(FileNotFoundError):
    """A run-directory artifact that is missing or lacks a column; the message says which stage writes it."""


def owner(rel: str) -> str | None:
    """The stage whose outputs hold ``rel`` (None for the manifest and markers)."""
    from cemg_ray.stages import STAGES  # the stage table names each stage's outputs (it imports this module)

    for stage, outputs in ((s.name, s.outputs) for s in STAGES.values()):
        if any(rel == out or rel.startswith(out.rstrip("/") + "/") for out in outputs):
            return stage
    return None


def _need(store: Store, rel: str) -> None:
    if not store.exists(rel):
        stage = owner(rel)
        hint = f"; run its stage: cemg-ray run JOB.yaml --stages {stage}" if stage else ""
        raise ArtifactError(f"{store.uri(rel)} not found{hint}")


def _table(store: Store, rel: str, columns: list[str] | None, required: tuple[str, ...]) -> pa.Table:
    _need(store, rel)
    table = store.read_parquet(rel, columns=columns)
    missing = [c for c in (columns or required) if c not in table.column_names]
    if missing:
        raise ArtifactError(f"{store.uri(rel)} has no column(s) {', '.join(missing)}: written by an older version; "
                            f"re-run the {owner(rel)!r} stage (--force)")
    return table


# -- typed readers and writers: every consumer goes through these ----------------------------------
def read_items(store: Store, columns: list[str] | None = None) -> pa.Table:
    """The item table in ``item_idx`` order (``item_idx``, ``item_id``, text and image columns)."""
    from cemg_ray.arrow_rows import sorted_by

    table = _table(store, ITEMS, columns, ("item_idx", "item_id"))
    return sorted_by(table, "item_idx") if "item_idx" in table.column_names else table


def num_items(store: Store) -> int:
    return read_items(store, ["item_idx"]).num_rows


def write_items(store: Store, table: pa.Table) -> None:
    from cemg_ray.arrow_rows import sorted_by  # a million images overflow Table.sort_by's 32-bit offsets

    store.write_parquet(ITEMS, sorted_by(table, "item_idx"))


def read_sequences(store: Store, columns: list[str] | None = None) -> pa.Table:
    """One row per user: ``user_id`` and ``items`` (item_idx in time order)."""
    return _table(store, SEQUENCES, columns, ("user_id", "items"))


def write_sequences(store: Store, table: pa.Table) -> None:
    store.write_parquet(SEQUENCES, table)


def read_popularity(store: Store) -> np.ndarray:
    """Training-split interaction count per item_idx."""
    import numpy as np

    _need(store, POPULARITY)
    return np.asarray(store.read_json(POPULARITY)["counts"], dtype=np.int64)


def write_popularity(store: Store, counts: np.ndarray) -> None:
    store.write_json(POPULARITY, {"counts": [int(c) for c in counts], "version": "popularity"})


def read_codes_meta(store: Store) -> dict[str, Any]:
    """The tokenizer's code layout: ``level_sizes``, ``num_levels`` and how the codes were made."""
    _need(store, CODES_META)
    return store.read_json(CODES_META)


def write_codes_meta(store: Store, meta: dict[str, Any]) -> None:
    store.write_json(CODES_META, meta)


def read_manifest(store: Store) -> dict[str, Any]:
    """The run's manifest: resolved config, versions, git commit, per-stage records."""
    if not store.exists(MANIFEST):
        raise ArtifactError(f"{store.uri(MANIFEST)} not found: {store.root_uri} is not a run directory")
    return store.read_json(MANIFEST)


def write_manifest(store: Store, manifest: dict[str, Any]) -> None:
    store.write_json(MANIFEST, manifest)
