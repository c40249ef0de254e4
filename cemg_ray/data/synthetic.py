"""A deterministic synthetic catalog with planted structure, the embedded default for demo and tests.

Items belong to ``num_clusters`` clusters. The cluster is visible three ways: in the text (each
cluster has its own vocabulary), in the image pixels (each cluster has its own colour and stripe
orientation) and in who interacts with what (users stay mostly inside one cluster and walk through
it in a fixed order, so the next item is predictable from the last). Popularity is Zipf-skewed
inside each cluster, which leaves a tail of cold-start items.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cemg_ray.data.catalog import Catalog, LoadReport, build_items_table

if TYPE_CHECKING:
    from cemg_ray.config import SyntheticConfig

_ADJECTIVES = ["crimson", "azure", "golden", "emerald", "violet", "amber", "silver", "coral", "ivory",
               "onyx", "teal", "rose"]
_NOUNS = ["lipstick", "shampoo", "serum", "perfume", "mascara", "lotion", "polish", "cleanser", "brush",
          "balm", "toner", "powder"]
_FILLER = ["deluxe", "travel", "size", "pack", "classic", "fresh", "natural", "long", "lasting", "soft",
           "gentle", "daily", "pro", "mini", "set", "edition"]
_COLOURS = np.array([[220, 40, 40], [40, 90, 220], [230, 190, 30], [30, 170, 80], [150, 60, 200],
                     [240, 140, 20], [170, 170, 180], [250, 120, 110], [240, 235, 210], [30, 30, 30],
                     [20, 150, 150], [230, 90, 160]], dtype=np.float32)


def _image(rng: np.random.Generator, cluster: int, size: int) -> bytes:
    base = _COLOURS[cluster % len(_COLOURS)]
    yy, xx = np.mgrid[0:size, 0:size]
    angle = np.pi * (cluster % 4) / 4
    stripes = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.6) > 0)[..., None]
    img = base * (0.65 + 0.35 * stripes) + rng.normal(0, 18, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def choice_cdf(weights: np.ndarray) -> np.ndarray:
    """The cumulative distribution ``Generator.choice(n, p=weights / weights.sum())`` builds on each call."""
    cdf = np.cumsum(weights / weights.sum())
    return cdf / cdf[-1]


def draw_index(cdf: np.ndarray, rng: np.random.Generator) -> int:
    """One index drawn as ``rng.choice(len(cdf), p=...)`` draws it (one uniform, the same result), in log time."""
    return int(cdf.searchsorted(rng.random(), side="right"))


def make_catalog(cfg: SyntheticConfig | None = None) -> Catalog:
    """Build the catalog described by a ``SyntheticConfig`` (defaults when ``None``)."""
    if cfg is None:
        from cemg_ray.config import SyntheticConfig

        cfg = SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    n_items, n_clusters = cfg.num_items, cfg.num_clusters
    cluster = rng.permutation(np.arange(n_items) % n_clusters)
    members = [np.flatnonzero(cluster == c) for c in range(n_clusters)]
    titles, texts, images = [], [], []
    for i in range(n_items):
        c = int(cluster[i])
        adj, noun = _ADJECTIVES[c % len(_ADJECTIVES)], _NOUNS[c % len(_NOUNS)]
        words = rng.choice(_FILLER, size=2, replace=False)
        title = f"{adj} {noun} {words[0]} {words[1]} no. {i}"
        titles.append(title)
        texts.append(f"Title: {title}. Categories: {noun}s, {adj} collection")
        images.append(_image(rng, c, cfg.image_size))
    # Zipf popularity inside each cluster; the ring order gives a learnable "next item". Draws go through
    # each cluster's CDF, built once: what rng.choice(n, p=w) does on every call (the same draws for the same
    # seed), without re-summing the cluster's weights per draw, which made generation users x items.
    cdfs = [choice_cdf(1.0 / np.arange(1, len(m) + 1) ** 1.1) for m in members]

    def draw(c: int) -> int:
        return draw_index(cdfs[c], rng)

    seqs = []
    for _ in range(cfg.num_users):
        c = int(rng.integers(n_clusters))
        length = int(rng.integers(cfg.min_len, cfg.max_len + 1))
        pos = draw(c)
        seq: list[int] = []
        for _ in range(length):
            if rng.random() < 0.1:  # occasional excursion to another cluster
                oc = int(rng.integers(n_clusters))
                item = int(members[oc][draw(oc)])
            else:
                item = int(members[c][pos % len(members[c])])
                pos += 1 + int(rng.random() < 0.2)
            if item not in seq:
                seq.append(item)
        while len(seq) < cfg.min_len:  # keep every user at least min_len long
            item = int(rng.integers(n_items))
            if item not in seq:
                seq.append(item)
        seqs.append(np.array(seq, dtype=np.int64))
    ids = [f"item{i:05d}" for i in range(n_items)]
    items = build_items_table(ids, titles, texts, images, cluster=cluster.astype(np.int32))
    users = [f"user{u:05d}" for u in range(cfg.num_users)]
    return Catalog(items, users, seqs, LoadReport("synthetic"))
