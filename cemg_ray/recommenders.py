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
from cemg_ray.generate.policy import LEGACY_MODELS, NEEDS_SASREC, PolicyError, legacy_hint, parse_ref, resolve

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
    loader: str  # "module:attr" called as loader(cfg, store, **kwargs) (and policy= for a generator)
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    version_suffix: str = ""  # trained models that share a stage's outputs get distinct versions
    scheme: str | None = None  # the tokenize scheme the run must have used (None: any)
    decodes: bool = False  # a generator: takes a decoding policy (``MODEL:POLICY``)


# Trained models only: how a generator decodes is a policy (cemg_ray/generate/policy.py), not another model.
MODELS: dict[str, ModelSpec] = {
    "popularity": ModelSpec("popularity", "cemg_ray.evaluate.popularity:PopularityRecommender.load",
                            description="training-split interaction counts; the floor and serving's fallback"),
    "sasrec": ModelSpec("sasrec", "cemg_ray.evaluate.sasrec:SASRecRecommender.load",
                        description="SASRec over item ids on the same split"),
    "cemg": ModelSpec("train", "cemg_ray.generate.recommender:load_recommender",
                      description="the generator over semantic IDs; decoded by a policy (cemg:beam, cemg:hybrid, ...)",
                      decodes=True),
    "mscgrec": ModelSpec("train", "cemg_ray.generate.recommender:load_recommender",
                         description="MSCGRec: the generator over per-modality codes (tokenize.scheme: mscgrec); "
                                     "refuses a run tokenized with another scheme",
                         version_suffix="+mscgrec", scheme="mscgrec", decodes=True),
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


def spec(ref: str, where: str = "model") -> ModelSpec:
    """The registered model a reference (``MODEL`` or ``MODEL:POLICY(...)``) names."""
    name = model_name(ref, where)
    if name not in MODELS:
        hint = legacy_hint(name)
        raise UnknownModelError(f"{where}: {hint}" if hint else
                                f"{where}: unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def model_name(ref: str, where: str = "model") -> str:
    """The model part of a reference (``cemg:hybrid`` -> ``cemg``)."""
    return parse_ref(ref, where)[0]


def resolve_policy(ref: str, cfg: JobConfig, where: str = "model") -> tuple[str, Any]:
    """(policy name, policy object) of a generator reference; a bare ``cemg`` decodes with ``decode.policy``.
    A policy asked of a model that has none (``sasrec:beam``) is an error that says so."""
    name, policy, knobs = parse_ref(ref, where)
    if not spec(ref, where).decodes:
        if policy:
            raise PolicyError(f"{where}: {ref!r}: {name} is not a generator and has no decoding policies")
        return "", None
    policy = policy or cfg.decode.policy
    return policy, resolve(policy, knobs, cfg.decode.named(), f"{where} {ref!r}")


def check_ref(ref: str, cfg: JobConfig, where: str = "model") -> None:
    """Raise (naming ``where``) unless ``ref`` is a registered model with a policy the job defines."""
    resolve_policy(ref, cfg, where)


def model_stage(name: str, where: str = "model") -> str:
    return spec(name, where).stage


def stages_of(ref: str, cfg: JobConfig | None = None) -> list[str]:
    """The stages one model reference reads: its model's, ``sasrec`` for a policy that blends it in and ``pca``
    for one that reads content vectors (known only with the job's ``cfg``, where policies are named)."""
    stages = [spec(ref).stage]
    if cfg is not None and spec(ref).decodes:
        policy = resolve_policy(ref, cfg)[1]
        if policy is not None and policy.kind in NEEDS_SASREC:
            stages.append(MODELS["sasrec"].stage)
        if getattr(policy, "content_weight", 0):
            stages.append("pca")
    return stages


def stages_for(refs: list[str], cfg: JobConfig | None = None) -> list[str]:
    """The stages the named (known) models read, in the order first needed."""
    known = [r for r in refs if _is_ref(r) and parse_ref(r)[0] in MODELS]
    return list(dict.fromkeys(stage for r in known for stage in stages_of(r, cfg)))


def _is_ref(ref: str) -> bool:
    try:
        parse_ref(ref)
    except PolicyError:
        return False
    return True


FALLBACK_MODEL = "cemg"


def default_model(store: Store) -> str:
    """The run's recommended list (a reference such as ``cemg:hybrid``): the one its evaluate stage chose on the
    validation split (``evaluate.select_default``), else ``cemg``. Serving, export and ``open_run`` use it when
    no model is named. A choice recorded under an old model name (``cemg_hybrid``) is read as its policy."""
    if store.exists(artifacts.DEFAULT_MODEL):
        chosen = str(store.read_json(artifacts.DEFAULT_MODEL).get("model") or "")
        chosen = LEGACY_MODELS.get(chosen, chosen)
        if _is_ref(chosen) and parse_ref(chosen)[0] in MODELS:
            return chosen
    return FALLBACK_MODEL


def model_version(ref: str, store: Store, cfg: JobConfig | None = None) -> str:
    """One version string per trained model and decoding policy: the generator's own (``+POLICY`` unless the beam),
    else ``<model>-<stage hash>-<finish time>``. A bare generator name decodes with ``cfg.decode.policy``."""
    s = spec(ref)
    policy = resolve_policy(ref, cfg)[0] if cfg is not None else (parse_ref(ref)[1] or "")
    if s.stage == "train" and store.exists(artifacts.GENERATOR_REPORT):
        own = str(store.read_json(artifacts.GENERATOR_REPORT).get("model_version") or "")
        if own:
            version = own + s.version_suffix + (f"+{policy}" if policy and policy != "beam" else "")
            if MODELS["sasrec"].stage in stages_of(ref, cfg)[1:]:  # a blend: a retrained SASRec is another list
                version += "+" + model_version("sasrec", store)
            return version
    marker = artifacts.read_marker(store, s.stage) or {}
    stamp = ""
    if marker.get("finished"):
        stamp = "-" + datetime.fromisoformat(marker["finished"]).strftime("%Y%m%dT%H%M%S")
    return f"{model_name(ref)}-{marker.get('hash', 'unknown')}{stamp}"


def load(ref: str, cfg: JobConfig, store: Store, where: str = "model") -> Recommender:
    """Load a registered model from a run directory, decoding with the reference's policy (a generator), with
    its name (the reference as asked) and version set."""
    s = spec(ref, where)
    policy = resolve_policy(ref, cfg, where)[1]
    check_scheme(model_name(ref), store)
    module, attr = s.loader.split(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    rec = obj(cfg, store, **s.kwargs, **({"policy": policy} if s.decodes else {}))
    rec.name = ref
    rec.model_version = model_version(ref, store, cfg)
    return rec


def with_policy(rec: Recommender, ref: str, cfg: JobConfig, store: Store, where: str = "policy") -> Recommender:
    """The loaded generator ``rec`` decoding with the policy of reference ``ref`` (same model, nothing reloaded)."""
    if model_name(ref, where) != model_name(rec.name):
        raise PolicyError(f"{where}: {ref!r} names another model than the loaded {rec.name!r}")
    policy = resolve_policy(ref, cfg, where)[1]  # first: a model without policies is refused, saying so
    view = rec.with_policy(policy)
    view.name = ref
    view.model_version = model_version(ref, store, cfg)
    return view


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


def rank_unseen(rec: Recommender, histories: list[np.ndarray], ks: list[int], seen: list[set[int]],
                catalog: int) -> list[list[tuple[int, float]]]:
    """The one composition every consumer ranks through (the Python API, serving, the export and the evaluation):
    each history's first ``ks[i]`` real, finitely scored items outside ``seen[i]``, from one model call per fetch
    bucket, the model asked for enough items that ``k`` remain after the seen ones go."""
    wants = [fetch_size(k, len(s), catalog) for k, s in zip(ks, seen)]
    rows = recommend_rows(rec, histories, wants)
    return [unseen_top_k(items, scores, s, k, catalog) for (items, scores), s, k in zip(rows, seen, ks)]


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
