"""Atomic, idempotent commit of an export partition on any pyarrow filesystem (local or S3).

Layout of ``<output>/dt=YYYY-MM-DD/``: ``part-NNNNN.parquet`` data files, ``_manifest.json``
(counts, model version, timing) and ``_SUCCESS``, written last. Readers trust a partition only
when ``_SUCCESS`` exists; every name but the parts starts with ``_`` so that a reader opening the
folder as a Parquet dataset (Arrow, Spark, Hive, Athena) sees only data. Workers write into
``_staging/<attempt>/``; the commit removes ``_SUCCESS``, deletes old
parts, moves the staged files in under deterministic names, then writes the manifest and the
marker. A run killed at any point leaves no ``_SUCCESS`` (or the previous complete export's
parts and marker untouched, if it died before the commit began); a re-run cleans up and commits
exactly one copy.
"""

from __future__ import annotations

import json

from cemg_ray.store import Store

SUCCESS = "_SUCCESS"
MANIFEST = "_manifest.json"
STAGING = "_staging"


def is_committed(store: Store, partition: str) -> bool:
    return store.exists(f"{partition}/{SUCCESS}")


def committed_manifest(store: Store, partition: str) -> dict | None:
    if not is_committed(store, partition):
        return None
    try:
        return store.read_json(f"{partition}/{MANIFEST}")
    except Exception:  # noqa: BLE001 - an unreadable manifest means "not reusable"
        return None


def file_names(store: Store, folder: str) -> list[str]:
    """Names (not paths) of the files directly under ``folder``."""
    return [f.rsplit("/", 1)[-1] for f in store.list(folder)]


def data_files(store: Store, partition: str) -> list[str]:
    return [f for f in file_names(store, partition) if f.endswith(".parquet") and not f.startswith("_")]


def commit(store: Store, partition: str, attempt: str, manifest: dict) -> list[str]:
    """Move ``_staging/<attempt>/*.parquet`` into the partition and mark it complete; returns the parts."""
    staged = sorted(f for f in file_names(store, f"{partition}/{STAGING}/{attempt}") if f.endswith(".parquet"))
    store.delete(f"{partition}/{SUCCESS}")
    for old in data_files(store, partition):
        store.delete(f"{partition}/{old}")
    parts = []
    for n, name in enumerate(staged):
        part = f"part-{n:05d}.parquet"
        store.fs.move(store.path(f"{partition}/{STAGING}/{attempt}/{name}"), store.path(f"{partition}/{part}"))
        parts.append(part)
    manifest = {**manifest, "files": parts}
    store.write_json(f"{partition}/{MANIFEST}", manifest)
    store.write_bytes(f"{partition}/{SUCCESS}", json.dumps({"rows": manifest.get("rows")}).encode())
    store.delete(f"{partition}/{STAGING}")
    return parts
