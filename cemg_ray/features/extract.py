"""Feature extraction, in-process or sharded over a Ray Data actor pool (one encoder per actor).

Both paths call the same :class:`BatchEncoder` on the same batches, so they give the same
vectors; the Ray path only decides where batches run. Output rows (``features/<m>.parquet``):
``item_idx`` int32, ``embedding`` list<float32> (zeros when missing), ``missing`` bool, and
``reason`` (why it is missing, '' otherwise).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from cemg_ray.features.config import FeaturesConfig
from cemg_ray.features.images import UNDECODABLE, check_image, decode_image, read_image_bytes

log = logging.getLogger("cemg_ray")

MODALITIES = ("text", "image")
COLUMNS = {"text": ["item_idx", "text"], "image": ["item_idx", "image", "image_uri"]}
EMPTY_TEXT = "empty_text"


class BatchEncoder:
    """Callable for ``map_batches``: loads its encoder once, encodes a batch, flags what is missing."""

    def __init__(self, modality: str, cfg: dict[str, Any], images_dir: str | None = None, device: str = "cpu",
                 storage: dict[str, str | None] | None = None, threads: int | None = None):
        import torch

        from cemg_ray.features.encoders import ImageEncoder, TextEncoder

        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        if threads:
            torch.set_num_threads(threads)
        self.modality, self.images_dir, self.storage = modality, images_dir, storage or {}
        fcfg = FeaturesConfig(**cfg)
        self.encoder = TextEncoder(fcfg.text, device) if modality == "text" else ImageEncoder(fcfg.image, device)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["item_idx"])
        reasons = [""] * n
        if self.modality == "text":
            texts = [t if isinstance(t, str) else "" for t in batch["text"]]
            ok = [i for i, t in enumerate(texts) if t.strip()]
            for i in sorted(set(range(n)) - set(ok)):
                reasons[i] = EMPTY_TEXT
            vecs = self.encoder.encode([texts[i] for i in ok])
        else:
            pixels, ok = [], []
            images = batch.get("image", [None] * n)
            uris = batch.get("image_uri", [None] * n)
            enc = self.encoder
            for i in range(n):
                data, why = read_image_bytes(images[i], uris[i], self.images_dir, **self.storage)
                if data is not None:
                    why = check_image(data)  # pixel count and aspect ratio, before any decoding
                arr = decode_image(data, enc.image_size, enc.mean, enc.std) if data is not None and not why else None
                if arr is None:
                    reasons[i] = why or UNDECODABLE
                    continue
                pixels.append(arr)
                ok.append(i)
            vecs = enc.encode(np.stack(pixels)) if ok else np.zeros((0, enc.dim), np.float32)
        emb = np.zeros((n, self.encoder.dim), dtype=np.float32)
        emb[ok] = vecs
        missing = np.ones(n, dtype=bool)
        missing[ok] = False
        return {"item_idx": np.asarray(batch["item_idx"], dtype=np.int32), "embedding": emb, "missing": missing,
                "reason": np.asarray(reasons, dtype=object)}


def features_table(item_idx: np.ndarray, emb: np.ndarray, missing: np.ndarray, reasons: list[str]) -> pa.Table:
    """The ``features/<m>.parquet`` table, sorted by item_idx; missing rows hold zero vectors."""
    order = np.argsort(item_idx, kind="stable")
    emb = np.ascontiguousarray(emb[order], dtype=np.float32)
    emb[missing[order]] = 0.0
    n, dim = emb.shape
    step = max(1, (2**31 - 1) // max(dim, 1))  # list<float32> has int32 offsets: chunk very large catalogs
    chunks = [pa.ListArray.from_arrays(pa.array(np.arange(len(c) + 1, dtype=np.int32) * dim),
                                       pa.array(c.reshape(-1), pa.float32()))
              for c in (emb[s:s + step] for s in range(0, max(n, 1), step))]
    return pa.table({
        "item_idx": pa.array(np.asarray(item_idx)[order], pa.int32()),
        "embedding": pa.chunked_array(chunks, pa.list_(pa.float32())),
        "missing": pa.array(np.asarray(missing, dtype=bool)[order]),
        "reason": pa.array([str(reasons[i]) for i in order], pa.string()),
    })


def all_missing_table(item_idx: np.ndarray, reason: str) -> pa.Table:
    """A modality nobody has (disabled, or no item has an image): every row missing, zero-width vectors."""
    n = len(item_idx)
    return features_table(np.asarray(item_idx), np.zeros((n, 0), np.float32), np.ones(n, bool), [reason] * n)


def embeddings(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(embedding [N, D] float32, missing [N] bool) of a features table, in its row order."""
    col = table.column("embedding").combine_chunks()
    n = len(col)
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    if n and len(values) % n:
        raise ValueError("features table: field 'embedding' has vectors of different lengths")
    return values.reshape(n, len(values) // n if n else 0), table.column("missing").to_numpy(zero_copy_only=False)


def _merge(parts: list[dict[str, np.ndarray]], dim: int) -> pa.Table:
    if not parts:
        return features_table(np.zeros(0, np.int32), np.zeros((0, dim), np.float32), np.zeros(0, bool), [])
    return features_table(np.concatenate([p["item_idx"] for p in parts]),
                          np.concatenate([p["embedding"] for p in parts]),
                          np.concatenate([p["missing"] for p in parts]),
                          [r for p in parts for r in p["reason"]])


def _input_table(items: pa.Table, modality: str) -> pa.Table:
    """The columns one modality needs; texts ordered by length so batches pad little (output is re-sorted)."""
    cols = [c for c in COLUMNS[modality] if c in items.column_names]
    table = items.select(cols)
    if modality == "text" and table.num_rows:
        lengths = pc.utf8_length(pc.fill_null(table.column("text"), "")).to_numpy(zero_copy_only=False)
        table = table.take(pa.array(np.argsort(lengths, kind="stable")))
    return table


def extract_in_process(items: pa.Table, modality: str, cfg: FeaturesConfig, images_dir: str | None = None,
                       storage: dict[str, str | None] | None = None,
                       encoder: BatchEncoder | None = None) -> pa.Table:
    """One process, one encoder, batches of ``cfg.batch_size`` in order (with a progress bar)."""
    enc = encoder or BatchEncoder(modality, cfg.model_dump(), images_dir, device=_local_device(cfg), storage=storage)
    table = _input_table(items, modality)
    parts = []
    for s in tqdm(range(0, table.num_rows, cfg.batch_size), desc=f"{modality} features", unit="batch",
                  mininterval=5, disable=True if table.num_rows <= cfg.batch_size else None):
        sl = table.slice(s, cfg.batch_size)
        parts.append(enc({c: sl.column(c).to_numpy(zero_copy_only=False) for c in sl.column_names}))
    return _merge(parts, enc.dim)


def _local_device(cfg: FeaturesConfig) -> str:
    """``cuda`` for the in-process path when this process sees a GPU and GPUs are not switched off."""
    import torch

    return "cuda" if cfg.gpus_per_actor != 0 and torch.cuda.is_available() else "cpu"


def gpus_per_actor(cfg: FeaturesConfig) -> float:
    """The configured GPUs per actor, or (None) one GPU per actor when the cluster has any."""
    if cfg.gpus_per_actor is not None:
        return float(cfg.gpus_per_actor)
    import ray

    return 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def extract_with_ray(items: pa.Table, modality: str, cfg: FeaturesConfig, images_dir: str | None = None,
                     num_actors: int | None = None, storage: dict[str, str | None] | None = None) -> pa.Table:
    """Shard the items over a pool of ``num_actors`` encoder actors (Ray must be initialised).

    Actors take fractional CPUs (``cpus_per_actor``) so the read tasks are never starved on small
    machines, and the input is repartitioned so that every actor gets blocks.
    """
    import ray.data

    actors = num_actors or cfg.num_actors
    gpus = gpus_per_actor(cfg)
    table = _input_table(items, modality)
    from cemg_ray.raycluster import check_fits

    check_fits("features", {"CPU": cfg.cpus_per_actor, "GPU": gpus or 0.0}, what="encoder actor")
    ds = ray.data.from_arrow(table).repartition(max(1, min(table.num_rows, actors * 4)))
    ds = ds.map_batches(
        BatchEncoder,
        fn_constructor_kwargs={"modality": modality, "cfg": cfg.model_dump(), "images_dir": images_dir,
                               "device": "cuda" if gpus else "cpu", "storage": storage,
                               "threads": cfg.threads_per_actor},
        batch_size=cfg.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cfg.cpus_per_actor, **({"num_gpus": gpus} if gpus else {}))
    parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    if not parts:
        return _merge([], 0)
    return _merge(parts, parts[0]["embedding"].shape[1])


def extract(items: pa.Table, modality: str, cfg: FeaturesConfig, images_dir: str | None = None,
            use_ray: bool | None = None, storage: dict[str, str | None] | None = None) -> tuple[pa.Table, dict]:
    """Extract one modality; returns the table and a report (missing counts by reason, wall time, items/s)."""
    t0 = time.perf_counter()
    ray_path = cfg.use_ray if use_ray is None else use_ray
    if ray_path:
        table = extract_with_ray(items, modality, cfg, images_dir, storage=storage)
    else:
        table = extract_in_process(items, modality, cfg, images_dir, storage=storage)
    wall = time.perf_counter() - t0
    reasons = Counter(r for r in table.column("reason").to_pylist() if r)
    report = {"items": table.num_rows, "missing": int(sum(reasons.values())), "missing_by_reason": dict(reasons),
              "dim": int(embeddings(table.slice(0, 1))[0].shape[1]) if table.num_rows else 0,
              "wall_s": round(wall, 2), "items_per_s": round(table.num_rows / max(wall, 1e-9), 1),
              "path": "ray" if ray_path else "in-process"}
    if ray_path:
        report.update(actors=cfg.num_actors, cpus_per_actor=cfg.cpus_per_actor, gpus_per_actor=gpus_per_actor(cfg))
    log.info("features %s: %d items in %.1fs, %.1f items/s, %d missing %s (%s)", modality, report["items"], wall,
             report["items_per_s"], report["missing"], report["missing_by_reason"] or "", report["path"])
    return table, report


def encode_items(items: pa.Table, cfg: FeaturesConfig, images_dir: str | None = None,
                 storage: dict[str, str | None] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """In-process encoding of a few items (e.g. items added after training).

    ``items`` needs ``text`` and/or ``image``/``image_uri`` columns (the data stage's item table, ``artifacts.ITEMS``).
    Returns {modality: (emb [N, D] float32, missing [N] bool)} in the table's row order, for every
    enabled modality. A modality configured with precomputed Parquet vectors is looked up by
    ``item_id`` there (a ``.npy`` file is positional, so new items are flagged missing).
    """
    from cemg_ray.features.precomputed import load_precomputed

    n = items.num_rows
    work = pa.table({
        "item_idx": pa.array(np.arange(n, dtype=np.int32)),
        "item_id": items.column("item_id").cast(pa.string()) if "item_id" in items.column_names
        else pa.array([str(i) for i in range(n)]),
        "text": items.column("text") if "text" in items.column_names else pa.nulls(n, pa.string()),
        "image": items.column("image") if "image" in items.column_names else pa.nulls(n, pa.binary()),
        "image_uri": items.column("image_uri") if "image_uri" in items.column_names else pa.nulls(n, pa.string()),
    })
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for modality, enabled, enc_cfg in (("text", cfg.use_text, cfg.text), ("image", cfg.use_image, cfg.image)):
        if not enabled:
            continue
        if enc_cfg.precomputed and enc_cfg.precomputed.endswith(".npy"):
            table = all_missing_table(np.arange(n), "not_in_precomputed")
        elif enc_cfg.precomputed:
            table = load_precomputed(enc_cfg.precomputed, work)
        else:
            table = extract_in_process(work, modality, cfg, images_dir, storage=storage)
        out[modality] = embeddings(table)  # sorted by item_idx = row position
    return out
