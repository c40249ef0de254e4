"""MSCGRec's semantic IDs (Vandenhirtz et al., "Multimodal Generative Recommendation for Fusing Semantic and
Collaborative Signals"): every modality quantized on its own, the codes concatenated (``tokenize.scheme: mscgrec``).

An item's identifier is one block of ``tokenize.modality_levels`` codes per modality, in the order text, image,
collaborative, then one disambiguation level (``codes.disambiguate``, TIGER's rule, as the CEMG scheme uses) so
that every item's full code is unique. Each block is a function of its own modality's vectors only: items alike
in text share text prefixes whatever their images or interactions say, where CEMG's fusion mixes the modalities
before one quantizer. The code table has the CEMG scheme's format (``codes`` + ``level_sizes``), so the item-level
generator (which pools every level of a history item into its input vector: the item enters with every modality's
codes), its constrained sequence learning, the trie-constrained beam, evaluation, export and serving read it
unchanged.

**Quantizer: residual k-means** per modality. At each level scikit-learn's ``KMeans`` is fitted on the residuals
the previous levels leave, and an item takes its nearest centroid; this is ``rqvae.ResidualQuantizer.kmeans_init``
(the project's own RQ codebook initialisation) followed by its ``encode``, with no training after it. Chosen over
running the project's RQ-VAE trainer once per modality because:

- that trainer (``train.fit_tokenizer``) trains ``model.Tokenizer`` = CEMG's fusion layer + an RQ-VAE jointly; a
  single modality would have to pass as the fusion's "text" input with the other switches off, and its training
  (the whole tokenize stage took 245-298 s on Beauty for one RQ-VAE, docs/CODES.md) would run once per modality;
- the inputs are already compact (PCA-reduced content, 64-d collaborative embeddings), and the RQ-VAE starts from
  exactly these k-means codebooks; what it adds on top is a learned encoder, which earns its keep when one
  quantizer has to compress several modalities at once (CEMG's fused vector), less when each has its own;
- k-means is deterministic for a seed (no optimizer, no dead codes to reset), so "a block depends only on its
  modality" holds exactly and is tested.

A modality that no item has (Beauty has no images) or that is switched off (``tokenize.use_image`` ...) is skipped
and the stage report says which and why. Items that lack a modality some other items have take the extra code
``K`` at every level of that block (the level's size is then ``K + 1``), so they share a "missing" prefix instead
of the code of whatever real centroid a zero vector is nearest to. The collaborative vectors are LightGCN's item
embeddings or a trained SASRec's (``tokenize.collab_source``); catalog items without a training interaction
borrow theirs from their content neighbours (``inputs.load_inputs``, the CEMG scheme's rule), so for those few
items the collaborative block reads content too. The paper quantizes images with a self-supervised (DINO) image
tokenizer; no package here ships such weights, so images go through the ``features`` stage's CNN and PCA like in
the CEMG scheme and are quantized as the other modalities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from cemg_ray import artifacts
from cemg_ray.tokenize.codes import collision_stats, disambiguate, level_stats
from cemg_ray.tokenize.rqvae import ResidualQuantizer

if TYPE_CHECKING:
    from cemg_ray.store import Store
    from cemg_ray.tokenize.config import TokenizeConfig
    from cemg_ray.tokenize.inputs import ItemInputs

log = logging.getLogger("cemg_ray")

SCHEME = "mscgrec"
MODALITIES = ("text", "image", "collab")  # the order of the blocks in an identifier


@dataclass
class ModalityBlock:
    """One modality's quantization: its codes, codebooks and how well the codes reconstruct its vectors."""

    name: str
    codes: np.ndarray  # [N, levels] int64; ``codebook_size`` at every level where the item lacks the modality
    codebooks: list[np.ndarray]  # per level [K, d] float32
    present: np.ndarray  # [N] bool
    codebook_size: int

    @property
    def level_sizes(self) -> list[int]:
        """``K`` per level, ``K + 1`` when some item lacks the modality (its "missing" code)."""
        return [self.codebook_size + int(not self.present.all())] * self.codes.shape[1]

    def reconstruction(self) -> np.ndarray:
        """The sum of each present item's chosen centroids [n_present, d]."""
        rows = self.codes[self.present]
        return sum((book[rows[:, lvl]] for lvl, book in enumerate(self.codebooks)),
                   np.zeros((len(rows), self.codebooks[0].shape[1]), np.float32))


def residual_kmeans(x: np.ndarray, present: np.ndarray, levels: int, codebook_size: int,
                    seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Residual k-means codes [N, levels] of the present rows of ``x`` (``codebook_size`` on absent rows) and the
    per-level codebooks, fitted on the present rows only."""
    present = np.asarray(present, dtype=bool)
    codes = np.full((len(x), levels), codebook_size, dtype=np.int64)
    rows = torch.as_tensor(np.ascontiguousarray(x[present], dtype=np.float32))
    rq = ResidualQuantizer(levels, codebook_size, rows.shape[1])
    rq.kmeans_init(rows, seed)
    got, _ = rq.encode(rows)
    codes[present] = got.numpy()
    return codes, [book.detach().numpy().copy() for book in rq.codebooks]


def modality_vectors(inputs: ItemInputs, cfg: TokenizeConfig
                     ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """The modalities an identifier is made of, in block order, as (vectors [N, d], present [N]), and the reason
    each other modality was skipped (switched off, or missing for every item of the catalog)."""
    n = len(inputs.present)
    candidates = {
        "text": (cfg.use_text, inputs.text, inputs.present[:, 1], "tokenize.use_text"),
        "image": (cfg.use_image, inputs.image, inputs.present[:, 0], "tokenize.use_image"),
        "collab": (cfg.use_collab, inputs.collab, np.ones(n, dtype=bool), "tokenize.use_collab"),
    }
    used: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    for name in MODALITIES:
        on, x, present, switch = candidates[name]
        if not on:
            skipped[name] = f"switched off ({switch}: false)"
        elif x.shape[1] == 0 or not np.asarray(present).any():
            skipped[name] = "missing for every item of the catalog"
        else:
            used[name] = (x, np.asarray(present, dtype=bool))
    return used, skipped


def quantize_modalities(vectors: dict[str, tuple[np.ndarray, np.ndarray]], levels: int, codebook_size: int,
                        seed: int) -> list[ModalityBlock]:
    """One residual k-means per modality, each on its own vectors only (same seed for every modality)."""
    blocks = []
    for name, (x, present) in vectors.items():
        codes, books = residual_kmeans(x, present, levels, codebook_size, seed)
        blocks.append(ModalityBlock(name, codes, books, present, codebook_size))
    return blocks


def identifiers(blocks: list[ModalityBlock], headroom: int) -> tuple[np.ndarray, list[int]]:
    """The blocks concatenated plus the disambiguation level: (codes [N, sum of levels + 1], level sizes)."""
    if not blocks:
        raise ValueError("tokenize (mscgrec): every modality is off or missing (no text, no image, no collab)")
    full = disambiguate(np.concatenate([b.codes for b in blocks], axis=1))
    sizes = [s for b in blocks for s in b.level_sizes] + [int(full[:, -1].max()) + 1 + headroom]
    return full, sizes


def block_layout(blocks: list[ModalityBlock]) -> list[dict]:
    """Which levels of an identifier each modality owns: ``[{"modality", "first_level", "levels"}, ...]``."""
    out, first = [], 0
    for b in blocks:
        out.append({"modality": b.name, "first_level": first, "levels": int(b.codes.shape[1])})
        first += b.codes.shape[1]
    return out


def _block_report(block: ModalityBlock, x: np.ndarray) -> dict:
    rows = x[block.present]
    err = float(((rows - block.reconstruction()) ** 2).sum(1).mean()) if len(rows) else float("nan")
    norm = float((rows ** 2).sum(1).mean()) if len(rows) else float("nan")
    return {"items_present": int(block.present.sum()), "items_missing": int((~block.present).sum()),
            "level_sizes": block.level_sizes, "levels": level_stats(block.codes, block.level_sizes[0]),
            "collisions": collision_stats(block.codes), "reconstruction_mse": err,
            "relative_reconstruction_error": err / max(norm, 1e-12)}


def tokenize_mscgrec(store: Store, cfg: TokenizeConfig, items: pa.Table, inputs: ItemInputs) -> dict:
    """The tokenize stage under ``scheme: mscgrec``: quantize each modality, write the code table in the CEMG
    scheme's format (plus the scheme and the block layout in its meta), the codebooks and the report."""
    from cemg_ray.tokenize.plots import code_usage_figure
    from cemg_ray.tokenize.stage import planted_agreement

    vectors, skipped = modality_vectors(inputs, cfg)
    for name, why in skipped.items():
        log.info("tokenize (mscgrec): modality %s skipped: %s", name, why)
    blocks = quantize_modalities(vectors, cfg.modality_levels, cfg.modality_codebook_size, cfg.seed)
    full, level_sizes = identifiers(blocks, cfg.disamb_headroom)
    semantic = full[:, :-1]
    layout = block_layout(blocks)
    report = {
        "scheme": SCHEME,
        "quantizer": "residual k-means per modality (scikit-learn KMeans on each level's residuals)",
        "items": int(items.num_rows),
        "modalities": [b.name for b in blocks],
        "skipped_modalities": skipped,
        "blocks": layout,
        "per_modality": {b.name: _block_report(b, vectors[b.name][0]) for b in blocks},
        "levels": level_stats(semantic, max(level_sizes[:-1])),
        "before_disambiguation": collision_stats(semantic),
        "after_disambiguation": collision_stats(full),
        "level_sizes": level_sizes,
        "collab": {"source": cfg.collab_source, "borrowed_from_neighbours": int(inputs.collab_borrowed.sum())}
        if "collab" in vectors else None,
    }
    if "cluster" in items.column_names:
        clusters = items.column("cluster").to_numpy()
        report["planted_clusters"] = {b.name: planted_agreement(b.codes, clusters) for b in blocks}
    assert report["after_disambiguation"]["colliding_items"] == 0
    store.write_tensors(artifacts.TOKENIZER_WEIGHTS, {f"{b.name}.level{lvl}": book for b in blocks
                                                      for lvl, book in enumerate(b.codebooks)})
    store.write_json(artifacts.TOKENIZER_CONFIG, {"scheme": SCHEME, "config": cfg.model_dump(),
                                                  "scales": inputs.scales, "blocks": layout})
    # the items' modality vectors side by side (no fusion): the generator's optional content input
    store.write_tensors(artifacts.FUSED, {"fused": np.concatenate(
        [np.where(p[:, None], x, 0) for x, p in vectors.values()], axis=1).astype(np.float32)})
    store.write_parquet(artifacts.CODES, pa.table({
        "item_idx": items.column("item_idx"), "item_id": items.column("item_id"),
        "codes": pa.array(full.astype(np.int32).tolist(), type=pa.list_(pa.int32()))}))
    artifacts.write_codes_meta(store, {"level_sizes": level_sizes, "num_levels": len(level_sizes),
                                       "codebook_size": cfg.modality_codebook_size, "scheme": SCHEME,
                                       "blocks": layout, "skipped_modalities": skipped})
    store.write_figure(artifacts.CODE_USAGE_FIGURE, code_usage_figure(semantic, max(level_sizes[:-1])))
    store.write_json(artifacts.TOKENIZE_REPORT, report)
    log.info("tokenize (mscgrec): %d items, modalities %s%s, collisions before disambiguation %.2f%%, "
             "level sizes %s", items.num_rows, ", ".join(report["modalities"]),
             "".join(f" ({k} skipped: {v})" for k, v in skipped.items()),
             100 * report["before_disambiguation"]["collision_rate"], level_sizes)
    return {k: report[k] for k in ("scheme", "modalities", "skipped_modalities", "before_disambiguation",
                                   "level_sizes")}
