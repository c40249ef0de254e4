"""Every pipeline stage, declared once: name, function, config sections, the stages it reads, its outputs.

The runner (``cemg_ray/pipeline.py``) reads this table; a stage's module holds only its function, which imports
the small kit of ``cemg_ray/stagekit.py`` and never the runner. Functions are named as ``module:attr`` and
imported when their stage runs, so asking for the order or the outputs imports no stage's dependencies.

Four stages keep names that differ from the package their code lives in (``popularity`` and ``sasrec`` in
``evaluate/``, writing ``baselines/``; ``lightgcn`` in ``collab/``; ``train`` in ``generate/``, writing
``generate/``; ``evaluate`` writing ``eval/``): the names are the run directory's contract (``_stages/<name>.json``,
``--stages``, every job file and every run already on disk), so the ``function`` column says where each lives.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cemg_ray import artifacts

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``function`` (``module:attr``, called with a ``StageContext``, returns its report), the config
    sections its hash covers besides ``dataset``, the stages it reads (a tuple, or ``module:attr`` of a function of
    the config for a stage whose inputs depend on it) and the run-directory paths it writes."""

    name: str
    function: str
    sections: tuple[str, ...] = ()
    after: tuple[str, ...] | str = ()
    outputs: tuple[str, ...] = ()

    def run(self) -> Callable[..., dict[str, Any]]:
        """The stage's function, imported now (a test may replace it on its module)."""
        return _resolve(self.function)

    def deps(self, cfg: JobConfig) -> tuple[str, ...]:
        return tuple(_resolve(self.after)(cfg)) if isinstance(self.after, str) else self.after

    @property
    def doc(self) -> str:
        return (self.run().__doc__ or "").strip()


def _resolve(ref: str) -> Any:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


# In pipeline order.
STAGES: dict[str, StageSpec] = {s.name: s for s in (
    StageSpec("data", "cemg_ray.data.stage:run", outputs=("data",)),
    StageSpec("popularity", "cemg_ray.evaluate.stage:run_popularity", after=("data",),
              outputs=(artifacts.POPULARITY,)),
    StageSpec("sasrec", "cemg_ray.evaluate.stage:run_sasrec", ("sasrec",), ("data",), (artifacts.SASREC,)),
    StageSpec("features", "cemg_ray.features.stage:run", ("features",), ("data",), ("features",)),
    StageSpec("pca", "cemg_ray.features.stage:run_pca", ("pca",), ("features",), ("pca",)),
    StageSpec("lightgcn", "cemg_ray.collab.stage:run", ("lightgcn",), ("data",), ("lightgcn",)),
    StageSpec("tokenize", "cemg_ray.tokenize.stage:run", ("tokenize",), "cemg_ray.tokenize.stage:upstream",
              ("tokenize",)),
    StageSpec("train", "cemg_ray.generate.stage:run", ("train",), ("data", "tokenize"), ("generate",)),
    StageSpec("evaluate", "cemg_ray.evaluate.stage:run", ("evaluate", "decode"), "cemg_ray.evaluate.stage:upstream",
              ("eval",)),
    # writes to export.output (default: <run_dir>/export), a dated partition committed by its own protocol
    StageSpec("export", "cemg_ray.export.stage:run", ("export", "decode"), "cemg_ray.export.stage:upstream"),
)}


def spec(name: str) -> StageSpec:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    return STAGES[name]


def outputs(name: str) -> tuple[str, ...]:
    return spec(name).outputs
