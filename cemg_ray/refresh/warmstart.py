"""The generator's weights from a previous run's model, for a catalog that may have grown since.

A refresh fine-tunes instead of retraining: every parameter of the new model whose name and shape match the saved
one starts from it; a per-item table that gained rows (``id_emb``: the catalog grew) keeps the old rows and the new
items' rows keep their fresh initialisation. Buffers are never copied: ``item_tokens``, ``content`` and ``id_mask``
describe the catalog of the run being trained, whose old rows equal the previous ones (old items keep their codes).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from cemg_ray import artifacts


class WarmStartError(ValueError):
    """The previous model cannot seed this one (no parameter in common, or a table that shrank)."""


def saved_weights(run_dir: str, endpoint_url: str | None = None, region: str | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a run's saved generator (``generate/model/*.safetensors``)."""
    from safetensors.torch import load_file

    from cemg_ray.store import Store

    store = Store(run_dir, endpoint_url, region)
    if not store.exists(artifacts.GENERATOR_MODEL):
        raise WarmStartError(f"train.init_from: {store.uri(artifacts.GENERATOR_MODEL)} not found: the run has no "
                             "trained generator to start from")
    state: dict[str, torch.Tensor] = {}
    with tempfile.TemporaryDirectory(prefix="cemg-init-") as tmp:
        folder = store.download_dir(artifacts.GENERATOR_MODEL, tmp)
        for f in sorted(Path(folder).glob("*.safetensors")):
            state.update(load_file(str(f)))
    return state


def copy_weights(model: torch.nn.Module, old: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Copy ``old`` into ``model``'s parameters in place; returns what was copied, grown and left fresh."""
    report: dict[str, Any] = {"copied": 0, "grown": {}, "fresh": []}
    with torch.no_grad():
        for name, param in model.named_parameters():
            prev = old.get(name)
            if prev is None:
                report["fresh"].append(name)
            elif tuple(prev.shape) == tuple(param.shape):
                param.copy_(prev.to(param.dtype))
                report["copied"] += 1
            elif prev.dim() == param.dim() and prev.shape[1:] == param.shape[1:] and prev.shape[0] < param.shape[0]:
                param[:prev.shape[0]] = prev.to(param.dtype)  # a per-item table: the catalog grew
                report["grown"][name] = [int(prev.shape[0]), int(param.shape[0])]
            else:
                raise WarmStartError(f"train.init_from: {name} has shape {tuple(prev.shape)} in the previous model and "
                                     f"{tuple(param.shape)} here: not the same architecture (a refresh keeps the "
                                     "previous run's train and tokenize settings)")
    if not report["copied"]:
        raise WarmStartError("train.init_from: no parameter of the previous model matches this one by name")
    return report


def warm_start(model: torch.nn.Module, run_dir: str, endpoint_url: str | None = None, region: str | None = None,
               log: logging.Logger | None = None) -> dict[str, Any]:
    """Start ``model`` from the generator saved in ``run_dir`` (see the module docstring)."""
    report = copy_weights(model, saved_weights(run_dir, endpoint_url, region))
    if log is not None:
        log.info("train: warm start from %s: %d tensors copied, grown %s, %d fresh", run_dir, report["copied"],
                 report["grown"] or "none", len(report["fresh"]))
    return report
