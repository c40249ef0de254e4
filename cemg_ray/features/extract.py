"""Feature extraction, in-process or sharded over a Ray Data actor pool (one model per actor).

Both paths call the same :class:`BatchEncoder`, so they give the same vectors; the Ray path
only decides where batches run. Output rows: item_idx, embedding (zeros when missing),
missing, reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from cemg_ray.features.config import FeaturesConfig
from cemg_ray.features.images import decode_image, read_image_bytes

log = logging.getLogger("cemg_ray")

COLUMNS = {"text": ["item_idx", "text"], "image": ["item_idx", "image", "image_uri"]}


class BatchEncoder:
    """Callable for ``map_batches``: loads its encoder once, encodes a batch, flags what is missing."""

    def __init__(self, modality: str, cfg: dict[str, Any], images_dir: str | None = None, device: str = "cpu"):
        from cemg_ray.features.encoders import ImageEncoder, TextEncoder

        self.modality, self.images_dir = modality, images_dir
        fcfg = FeaturesConfig(**cfg)
        self.image_size = fcfg.image.image_size
        self.encoder = TextEncoder(fcfg.text, device) if modality == "text" else ImageEncoder(fcfg.image, device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["item_idx"])
        reasons = [""] * n
        if self.modality == "text":
            texts = [str(t) if t is not None else "" for t in batch["text"]]
            ok = [i for i, t in enumerate(texts) if t.strip()]
            for i in set(range(n)) - set(ok):
                reasons[i] = "empty_text"
            vecs = self.encoder.encode([texts[i] for i in ok]) if ok else np.zeros((0, self.encoder.dim), np.float32)
        else:
            pixels, ok = [], []
            uris = batch.get("image_uri", [None] * n)
            for i in range(n):
                data, why = read_image_bytes(batch["image"][i], uris[i], self.images_dir)
                arr = decode_image(data, self.image_size) if data is not None else None
                if arr is None:
                    reasons[i] = why or "undecodable"
                    continue
                pixels.append(arr)
                ok.append(i)
            vecs = self.encoder.encode(np.stack(pixels)) if ok else np.zeros((0, self.encoder.dim), np.float32)
        emb = np.zeros((n, self.encoder.dim), dtype=np.float32)
        emb[ok] = vecs
        missing = np.ones(n, dtype=bool)
        missing[ok] = False
        return {"item_idx": np.asarray(batch["item_idx"], dtype=np.int32), "embedding": emb, "missing": missing,
                "reason": np.asarray(reasons, dtype=object)}


def _to_table(parts: list[dict[str, np.ndarray]]) -> pa.Table:
    idx = np.concatenate([p["item_idx"] for p in parts])
    order = np.argsort(idx, kind="stable")
    emb = np.concatenate([p["embedding"] for p in parts])[order].astype(np.float32)
    return pa.table({
        "item_idx": pa.array(idx[order], pa.int32()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1]),
        "missing": pa.array(np.concatenate([p["missing"] for p in parts])[order]),
        "reason": pa.array([str(r) for r in np.concatenate([p["reason"] for p in parts])[order]], pa.string()),
    })


def extract_in_process(items: pa.Table, modality: str, cfg: FeaturesConfig,
                       images_dir: str | None = None) -> pa.Table:
    enc = BatchEncoder(modality, cfg.model_dump(), images_dir)
    table = items.select(COLUMNS[modality])
    parts = []
    for s in tqdm(range(0, table.num_rows, cfg.batch_size), desc=f"{modality} features", unit="batch",
                  mininterval=5, leave=False):
        sl = table.slice(s, cfg.batch_size)
        parts.append(enc({c: sl.column(c).to_numpy(zero_copy_only=False) for c in sl.column_names}))
    return _to_table(parts)


def extract_with_ray(items: pa.Table, modality: str, cfg: FeaturesConfig, images_dir: str | None = None,
                     num_actors: int | None = None) -> pa.Table:
    """Shard the items over ``num_actors`` encoder actors (fractional CPUs, so reads are never starved)."""
    import ray.data

    actors = num_actors or cfg.num_actors
    ds = ray.data.from_arrow(items.select(COLUMNS[modality]))
    ds = ds.repartition(max(actors * 4, 1))
    ds = ds.map_batches(BatchEncoder, fn_constructor_kwargs={"modality": modality, "cfg": cfg.model_dump(),
                                                             "images_dir": images_dir,
                                                             "device": "cuda" if cfg.gpus_per_actor else "cpu"},
                        batch_size=cfg.batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cfg.cpus_per_actor,
                        num_gpus=cfg.gpus_per_actor or None)
    parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    return _to_table(parts)


def extract(items: pa.Table, modality: str, cfg: FeaturesConfig, images_dir: str | None = None,
            use_ray: bool | None = None) -> tuple[pa.Table, dict]:
    """Extract one modality and return the table plus a report (missing counts by reason, items/s)."""
    t0 = time.perf_counter()
    ray_path = cfg.use_ray if use_ray is None else use_ray
    table = (extract_with_ray if ray_path else extract_in_process)(items, modality, cfg, images_dir)
    wall = time.perf_counter() - t0
    reasons = Counter(r for r in table.column("reason").to_pylist() if r)
    report = {"items": table.num_rows, "missing": int(sum(reasons.values())), "missing_by_reason": dict(reasons),
              "dim": int(table.schema.field("embedding").type.list_size), "wall_s": round(wall, 2),
              "items_per_s": round(table.num_rows / max(wall, 1e-9), 1), "path": "ray" if ray_path else "in-process"}
    log.info("features %s: %d items, %d missing, %.1f items/s (%s)", modality, report["items"], report["missing"],
             report["items_per_s"], report["path"])
    return table, report
