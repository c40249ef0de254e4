"""The generator contract: what training, the train stage and loading need of a generator family.

Two families implement it, each in its own module: the paper's token layout (every code of every history item a
token into T5 or a decoder; ``token_family.py``) and the item-level generator (one pooled vector per history
item, a code head per level; ``item_family.py``). Code outside those modules asks :func:`family_for` (a job's
``train`` section) or :func:`family_of_model_dir` (a saved model) and never branches on the layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch

    from cemg_ray.config import JobConfig
    from cemg_ray.data.split import Split
    from cemg_ray.generate.config import TrainConfig
    from cemg_ray.generate.prefix_index import PrefixIndex
    from cemg_ray.generate.search import LevelScorer
    from cemg_ray.generate.tokens import TokenLayout
    from cemg_ray.store import Store


class GeneratorFamily(Protocol):
    """One way of laying histories out for a generator: its tensors, model, batches, search and files."""

    history: str  # the ``train.history`` value that selects it
    batch_keys: tuple[str, ...]  # the training tensors a batch reads
    config_file: str  # the file that marks a saved model of this family

    def check_inputs(self, cfg: TrainConfig, store: Store) -> None:
        """Fail before training when an artifact the configuration needs is missing."""

    def training_tensors(self, cfg: TrainConfig, split: Split, codes: np.ndarray, layout: TokenLayout,
                         valid: tuple[list[np.ndarray], np.ndarray], max_items: int
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
        """(training tensors, validation tensors with ``target_item``, supervised positions)."""

    def build(self, cfg: TrainConfig, layout: TokenLayout, codes: np.ndarray, store: Store,
              max_items: int) -> torch.nn.Module:
        """A freshly initialised model (seeded by ``cfg.seed``)."""

    def lengths(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each training row's length, for length-grouped batches."""

    def model_batch(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A batch of training rows as the model's keyword arguments (padding trimmed); ``model(**b).loss``."""

    def scorer(self, model: torch.nn.Module, rows: dict[str, np.ndarray], layout: TokenLayout,
               num_beams: int) -> LevelScorer:
        """The model's side of the one constrained search (``search.py``) for the histories in ``rows`` (the
        family's validation tensors): level log-probabilities given each beam's chosen prefix."""

    def top_k(self, model: torch.nn.Module, rows: dict[str, np.ndarray], index: PrefixIndex, num_beams: int,
              k: int, valid_list: str) -> np.ndarray:
        """Item_idx [B, k] of the list early stopping follows (``train.valid_list``)."""

    def save(self, model: torch.nn.Module, layout: TokenLayout, folder: str | Path) -> None:
        """Safetensors weights and what rebuilds the architecture."""

    def describe(self, model: torch.nn.Module) -> dict[str, Any]:
        """``parameters`` and ``trainable`` counts (and what else the report shows)."""

    def recommender(self, folder: str | Path, cfg: JobConfig, store: Store, policy: Any, version: str) -> Any:
        """The saved model behind the ``recommend`` contract, decoding with ``policy``."""


def families() -> dict[str, GeneratorFamily]:
    """Every family by its ``train.history`` value."""
    from cemg_ray.generate.item_family import ItemFamily
    from cemg_ray.generate.token_family import TokenFamily

    return {f.history: f for f in (TokenFamily(), ItemFamily())}


def family_for(cfg: TrainConfig) -> GeneratorFamily:
    """The family a job's ``train`` section trains."""
    return families()[cfg.history]


def family_of_model_dir(folder: str | Path) -> GeneratorFamily:
    """The family of a saved model, told by the file that marks it."""
    for family in families().values():
        if (Path(folder) / family.config_file).exists():
            return family
    marks = ", ".join(f.config_file for f in families().values())
    raise FileNotFoundError(f"{folder}: not a saved generator (none of {marks} is there)")
