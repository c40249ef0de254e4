"""Decoding policies: how one trained generator turns a history into a ranked list.

A policy is a parameter of the generator, not a model of its own: ``cemg`` is one trained model, and
``cemg:hybrid`` asks it for the hybrid ranking. Each policy kind carries its own knobs and validates them;
a job names policies in ``decode.policies`` (built-in names need no entry) and picks a default with
``decode.policy`` (the evaluate stage may choose another on validation: ``evaluate.select_default``).

A model reference is ``MODEL``, ``MODEL:POLICY`` or ``MODEL:POLICY(knob=value,...)``: the last overrides the
named policy's knobs for one evaluation or request (``cemg:hybrid(weight=0.7,cold_bias=2)``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class PolicyBase(BaseModel):
    """A policy's knobs: unknown ones are errors (a typo must not fall back to a default silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BeamPolicy(PolicyBase):
    """The trie-constrained beam search (``constrained: false``: the paper's w/o-Trie row, may emit non-items)."""

    kind: Literal["beam"] = "beam"
    constrained: bool = True


class ColdSharePolicy(PolicyBase):
    """The beam's list with ``share`` of its slots reserved for cold-start items (TIGER's reserved share), found
    by a second beam search over the cold items' own prefix index."""

    kind: Literal["cold_share"] = "cold_share"
    share: float = Field(0.2, gt=0.0, le=1.0)


class DensePolicy(PolicyBase):
    """The beam's candidates plus the cold-start items, ranked by the dense head (LIGER); ``cold_bias`` is added
    to the cold items' dense logits (they were rarely a training target, so the head under-scores them)."""

    kind: Literal["dense"] = "dense"
    cold_bias: float = Field(0.0, ge=-100.0, le=100.0)


class MergePolicy(PolicyBase):
    """The beam's list in its order, cold-start items merged in where the dense head (logit + ``cold_bias``)
    scores them above the next beam item."""

    kind: Literal["merge"] = "merge"
    cold_bias: float = Field(0.0, ge=-100.0, le=100.0)


class HybridPolicy(PolicyBase):
    """The beam's candidates plus the cold-start items ranked by ``weight * p_beam + (1 - weight) * p_dense``,
    the cold items' dense term raised by ``e^cold_bias``."""

    kind: Literal["hybrid"] = "hybrid"
    weight: float = Field(0.8, gt=0.0, lt=1.0)
    cold_bias: float = Field(0.0, ge=-100.0, le=100.0)


class DenseAllPolicy(PolicyBase):
    """The dense head over the whole catalog, no beam search (SASRec's ranking, over the generator's item vectors)."""

    kind: Literal["dense_all"] = "dense_all"


class BlendPolicy(PolicyBase):
    """The dense head over the whole catalog blended with the run's SASRec (the ``sasrec`` stage): items ranked
    by ``(1 - weight) log p_dense + weight log p_sasrec + content_weight * sim``, cold items raised by
    ``cold_bias``; ``sim`` is the cosine between an item's content vector and the mean of the last
    ``content_window`` history items' (the ``pca`` stage's text and image vectors). The two models err on different
    users (one sees codes and content, the other item ids only), and the content term reaches items neither has
    seen often: on Beauty's validation split the blend ranked above either model, and its knobs were chosen there
    (docs/EXPERIMENTS.md)."""

    kind: Literal["blend"] = "blend"
    weight: float = Field(0.3, ge=0.0, le=1.0)
    cold_bias: float = Field(0.0, ge=-100.0, le=100.0)
    content_weight: float = Field(0.0, ge=0.0, le=100.0)
    content_window: int = Field(3, ge=1, le=200)


Policy = Annotated[BeamPolicy | ColdSharePolicy | DensePolicy | MergePolicy | HybridPolicy | DenseAllPolicy
                   | BlendPolicy, Field(discriminator="kind")]
POLICY = TypeAdapter(Policy)

# Names every job has; ``decode.policies`` may override their knobs or add more names.
BUILTIN: dict[str, Any] = {
    "beam": BeamPolicy(),
    "unconstrained": BeamPolicy(constrained=False),
    "cold_share": ColdSharePolicy(),
    "dense": DensePolicy(),
    "merge": MergePolicy(),
    "hybrid": HybridPolicy(),
    "dense_all": DenseAllPolicy(),
    "blend": BlendPolicy(),
}
DEFAULT_POLICY = "beam"
KINDS = frozenset(p.kind for p in BUILTIN.values())
# policies that read the dense head (a generator trained with train.dense_weight > 0) / the cold-start items
NEEDS_DENSE = frozenset({"dense", "merge", "hybrid", "dense_all", "blend"})
NEEDS_COLD = frozenset({"cold_share", "dense", "merge", "hybrid", "blend"})
# policies that also read the run's SASRec: its stage must have completed
NEEDS_SASREC = frozenset({"blend"})

# The names these policies had when each was registered as a model of its own (runs before 2026-12-07).
LEGACY_MODELS: dict[str, str] = {
    "cemg_cold": "cemg:cold_share",
    "cemg_dense": "cemg:dense",
    "cemg_dense_merge": "cemg:merge",
    "cemg_hybrid": "cemg:hybrid",
    "cemg_dense_all": "cemg:dense_all",
    "cemg_unconstrained": "cemg:unconstrained",
}
# The decode keys those models read, and where each lives now.
LEGACY_DECODE_KEYS: dict[str, tuple[str, str]] = {
    "cold_share": ("cold_share", "share"),
    "hybrid_weight": ("hybrid", "weight"),
    "hybrid_cold_bias": ("hybrid", "cold_bias"),
}

_REF = re.compile(r"^(?P<model>[A-Za-z0-9_.-]+)(?::(?P<policy>[A-Za-z0-9_]+)(?:\((?P<knobs>[^()]*)\))?)?$")


class PolicyError(ValueError):
    """A policy name, reference or knob that cannot be used; the message names it and says what is accepted."""


def parse_ref(ref: str, where: str = "model") -> tuple[str, str | None, dict[str, str]]:
    """``MODEL[:POLICY[(k=v,...)]]`` -> (model, policy name or None, knob overrides as strings)."""
    m = _REF.match(ref.strip())
    if not m:
        raise PolicyError(f"{where}: {ref!r} is not MODEL, MODEL:POLICY or MODEL:POLICY(knob=value,...)")
    knobs: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in (m["knobs"] or "").split(","))):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise PolicyError(f"{where}: {ref!r}: knob {pair!r} is not knob=value")
        knobs[key.strip()] = value.strip()
    return m["model"], m["policy"], knobs


def legacy_hint(name: str) -> str:
    """A message for a model name that is now a policy of ``cemg`` (empty when ``name`` was never one)."""
    new = LEGACY_MODELS.get(name)
    return (f"{name!r} is no longer a model: it is the decoding policy {new.split(':')[1]!r} of the model 'cemg'; "
            f"write {new!r}") if new else ""


def named_policies(overrides: dict[str, Any]) -> dict[str, Any]:
    """The built-in policies with the job's ``decode.policies`` laid over them (validated, each by its kind)."""
    out = dict(BUILTIN)
    for name, body in overrides.items():
        out[name] = as_policy(body, name)
    return out


def as_policy(body: Any, name: str) -> Any:
    """One policy from a job's mapping; a built-in name may leave out ``kind`` (its own is meant)."""
    if isinstance(body, PolicyBase):
        return body
    if not isinstance(body, dict):
        raise PolicyError(f"decode.policies.{name}: expected a mapping of knobs, got {body!r}")
    if "kind" not in body:
        if name not in BUILTIN:
            raise PolicyError(f"decode.policies.{name}: a new policy name needs a kind; one of "
                              f"{', '.join(sorted({p.kind for p in BUILTIN.values()}))}")
        body = {"kind": BUILTIN[name].kind, **body}
    try:
        return POLICY.validate_python(body)
    except ValidationError as exc:
        raise PolicyError(f"decode.policies.{name}: {_first_error(exc)}") from None


def resolve(name: str, knobs: dict[str, str], policies: dict[str, Any], where: str = "model") -> Any:
    """The policy ``name`` of a job (``policies``: :func:`named_policies`), with ``knobs`` laid over it."""
    if name not in policies:
        raise PolicyError(f"{where}: unknown decoding policy {name!r}; known: {', '.join(policies)}")
    base = policies[name]
    if not knobs:
        return base
    try:
        return type(base).model_validate({**base.model_dump(), **knobs})
    except ValidationError as exc:
        raise PolicyError(f"{where}: policy {name!r}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if p not in KINDS)
    return f"{loc}: {err['msg']}" if loc else err["msg"]
