"""The models a run directory can answer with, and the rules every consumer shares.

Evaluation, serving and the bulk export all go through this module: the registry of model names, one
loader from a run directory, one model-version rule and one rule for excluding what a user has seen.
Loaders are imported by name only when a model is asked for, so serving a popularity model does not
import torch models, and nothing here imports a pipeline stage.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cemg_ray import artifacts

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig
    from cemg_ray.store import Store


class Recommender(Protocol):
    """What every registered model offers: a name, a version and batched top-k."""

    name: str
    model_version: str

    def recommend(self, histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(item_idx [B, k], scores [B, k]); -1 and -inf pad a list that has fewer than k items."""
        ...


@dataclass(frozen=True)
class ModelSpec:
    stage: str  # the pipeline stage whose outputs the model reads
    loader: str  # "module:attr" called as loader(cfg, store, **kwargs)
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    version_suffix: str = ""  # variants of one trained model get distinct versions
    scheme: str | None = None  # the tokenize scheme the run must have used (None: any)


MODELS: dict[str, ModelSpec] = {
    "popularity": ModelSpec("popularity", "cemg_ray.evaluate.popularity:PopularityRecommender.load",
                            description="training-split interaction counts; the floor and serving's fallback"),
    "sasrec": ModelSpec("sasrec", "cemg_ray.evaluate.sasrec:SASRecRecommender.load",
                        description="SASRec over item ids on the same split"),
    "cemg": ModelSpec("train", "cemg_ray.generate.recommender:load_recommender", {"cold_share": 0.0},
                      description="the generator with trie-constrained beam search"),
    "cemg_cold": ModelSpec("train", "cemg_ray.generate.recommender:load_recommender", {},
                           description="the generator with decode.cold_share of each list for cold-start items",
                           version_suffix="+cold"),
    "cemg_dense": ModelSpec("train", "cemg_ray.generate.recommender:load_recommender",
                            {"cold_share": 0.0, "rerank": "cold"},
                            description="the beam's candidates plus the cold-start items, ranked by the generator's "
                                        "dense head (LIGER; train.dense_weight > 0)",
                            version_suffix="+dense"),
    "cemg_dense_merge": ModelSpec("train", "cemg_ray.generate.recommender:load_recommender",
                                  {"cold_share": 0.0, "rerank": "merge"},
                                  description="the beam's list in its order, cold-start items merged in where the "
                                              "dense head scores them above the next beam item",
                                  version_suffix="+dense-merge"),
    "cemg_hybrid": ModelSpec("train", "cemg_ray.generate.recommender:load_recommender",
                             {"cold_share": 0.0, "rerank": "hybrid"},
                             description="the beam's candidates plus the cold-start items, ranked by the mixture of "
                                         "the code head's and the dense head's probabilities",
                             version_suffix="+hybrid"),
    "cemg_dense_all": ModelSpec("train", "cemg_ray.generate.recommender:load_recommender",
                                {"cold_share": 0.0, "rerank": "all"},
                                description="the generator's dense head over the whole catalog (no beam search)",
                                version_suffix="+dense-all"),
    "cemg_unconstrained": ModelSpec("train", "cemg_ray.generate.recommender:load_recommender",
                                    {"constrained": False, "cold_share": 0.0},
                                    description="the generator without the trie (the paper's w/o-Trie row)",
                                    version_suffix="+unconstrained"),
    "mscgrec": ModelSpec("train", "cemg_ray.generate.recommender:load_recommender", {"cold_share": 0.0},
                         description="MSCGRec: the generator over per-modality codes (tokenize.scheme: mscgrec) with "
                                     "trie-constrained beam search; refuses a run tokenized with another scheme",
                         version_suffix="+mscgrec", scheme="mscgrec"),
}


class UnknownModelError(KeyError):
    """A model name that is not registered; the message lists the known ones."""


class SchemeMismatchError(ValueError):
    """A model asked of a run whose tokenize stage used another scheme; the message names both and the run."""


def tokenize_scheme(store: Store) -> str:
    """The scheme the run's tokenize stage used (``tokenize/meta.json``; runs from before the field: ``cemg``)."""
    return str(artifacts.read_codes_meta(store).get("scheme") or "cemg")


def check_scheme(name: str, store: Store) -> None:
    """Raise :class:`SchemeMismatchError` when model ``name`` needs a tokenize scheme the run did not use."""
    need = spec(name).scheme
    if need is None:
        return
    got = tokenize_scheme(store)
    if got != need:
        raise SchemeMismatchError(
            f"model {name!r} needs a run tokenized with tokenize.scheme {need!r}, but the run {store.root_uri} was "
            f"tokenized with scheme {got!r} ({store.uri(artifacts.CODES_META)}); re-run its tokenize stage and the "
            f"later ones with tokenize.scheme: {need} (as jobs/{need}-cpu.yaml does), or ask for 'cemg'")


def spec(name: str, where: str = "model") -> ModelSpec:
    if name not in MODELS:
        raise UnknownModelError(f"{where}: unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def model_stage(name: str, where: str = "model") -> str:
    return spec(name, where).stage


def stages_for(names: list[str]) -> list[str]:
    """The stages the named (known) models read, in the order first needed."""
    return list(dict.fromkeys(MODELS[n].stage for n in names if n in MODELS))


FALLBACK_MODEL = "cemg"


def default_model(store: Store) -> str:
    """The run's recommended list: the one its evaluate stage chose on the validation split
    (``evaluate.select_default``), else ``cemg``. Serving, export and ``open_run`` use it when no model is named."""
    if store.exists(artifacts.DEFAULT_MODEL):
        chosen = store.read_json(artifacts.DEFAULT_MODEL).get("model")
        if chosen in MODELS:
            return chosen
    return FALLBACK_MODEL


def model_version(name: str, store: Store) -> str:
    """One version string per trained model: the generator's own, else ``<model>-<stage hash>-<finish time>``."""
    s = spec(name)
    if s.stage == "train" and store.exists(artifacts.GENERATOR_REPORT):
        own = str(store.read_json(artifacts.GENERATOR_REPORT).get("model_version") or "")
        if own:
            return own + s.version_suffix
    marker = artifacts.read_marker(store, s.stage) or {}
    stamp = ""
    if marker.get("finished"):
        stamp = "-" + datetime.fromisoformat(marker["finished"]).strftime("%Y%m%dT%H%M%S")
    return f"{name}-{marker.get('hash', 'unknown')}{stamp}"


def load(name: str, cfg: JobConfig, store: Store) -> Recommender:
    """Load a registered model from a run directory, with its name and version set."""
    s = spec(name)
    check_scheme(name, store)
    module, attr = s.loader.split(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    rec = obj(cfg, store, **s.kwargs)
    rec.name = name
    rec.model_version = model_version(name, store)
    return rec


def fetch_size(k: int, seen: int, catalog: int) -> int:
    """How many items to ask a model for so that ``k`` remain after removing ``seen`` distinct items."""
    return max(1, min(catalog, k + seen))


def fetch_bucket(want: int, beams: int | None) -> int:
    """The fetch size a row's model call uses: ``want`` rounded up to a whole number of beam widths.

    A beam search's list for one user depends on its width (``max(num_beams, k)``), so asking once per batch
    for the batch's largest fetch would make a user's recommendations depend on who shares the batch, and
    decode every user with the widest beam a long history needs. Rounding up to multiples of the configured
    width keeps each user's list a function of the user alone, and most users (``k + seen <= num_beams``) at
    the configured width. A model without beams (``beams`` None) ranks independently of k: one size serves all.
    """
    if not beams:
        return want
    return beams * -(-want // beams)


def recommend_rows(rec: Recommender, histories: list[np.ndarray],
                   wants: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One ranked (items, scores) row per history, at least ``wants[i]`` long (shorter only if the model has
    fewer items), from one model call per fetch bucket (:func:`fetch_bucket`)."""
    beams = getattr(rec, "num_beams", None)
    catalog = getattr(rec, "num_items", None)
    if not beams:  # rankings that do not depend on k: one call at the largest fetch
        groups = {max(wants, default=1): list(range(len(histories)))}
    else:
        groups = {}
        for row, want in enumerate(wants):
            size = fetch_bucket(want, beams)
            groups.setdefault(max(want, min(size, catalog)) if catalog else size, []).append(row)
    out: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.int64), np.zeros(0, np.float32))] * len(histories)
    for size, rows in sorted(groups.items()):
        items, scores = rec.recommend([histories[r] for r in rows], size)
        for pos, row in enumerate(rows):
            out[row] = (items[pos], scores[pos])
    return out


def unseen_top_k(items: np.ndarray, scores: np.ndarray, seen: set[int], k: int,
                 catalog: int) -> list[tuple[int, float]]:
    """The first ``k`` real, unseen, finitely scored items of one ranked row."""
    out: list[tuple[int, float]] = []
    for item, score in zip(items.tolist(), scores.tolist()):
        if 0 <= item < catalog and item not in seen and np.isfinite(score):
            out.append((item, float(score)))
            if len(out) == k:
                break
    return out
