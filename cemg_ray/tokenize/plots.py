"""Figures of the tokenize stage: code usage per level, fusion weights, training curves."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cemg_ray.plotting import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def code_usage_figure(codes: np.ndarray, codebook_size: int) -> Figure:
    levels = codes.shape[1]
    fig, axes = pyplot().subplots(1, levels, figsize=(3.2 * levels, 2.8), squeeze=False)
    for lvl, ax in enumerate(axes[0]):
        counts = np.sort(np.bincount(codes[:, lvl], minlength=codebook_size))[::-1]
        ax.bar(np.arange(len(counts)), counts, width=1.0, color="tab:blue")
        ax.set_title(f"level {lvl}: {int((counts > 0).sum())}/{codebook_size} used", fontsize=9)
        ax.set_xlabel("code (sorted by use)")
        ax.set_ylabel("items" if lvl == 0 else "")
    fig.tight_layout()
    return fig


def alpha_figure(alpha: np.ndarray, both_present: np.ndarray) -> Figure:
    fig, ax = pyplot().subplots(figsize=(4.5, 3))
    a = alpha[both_present, 0] if both_present.any() else np.zeros(0)
    ax.hist(a, bins=40, range=(0, 1), color="tab:orange")
    ax.set_xlabel("alpha_visual (alpha_text = 1 - alpha_visual)")
    ax.set_ylabel("items with both modalities")
    ax.set_title("collaborative-guided fusion weights", fontsize=9)
    fig.tight_layout()
    return fig


def curves_figure(history: list[dict]) -> Figure:
    fig, ax1 = pyplot().subplots(figsize=(5, 3))
    ep = [h["epoch"] for h in history]
    for key in ("recon", "quant", "div"):
        ax1.plot(ep, [h[key] for h in history], label=key)
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax2 = ax1.twinx()
    ax2.plot(ep, [h["used_level0"] for h in history], color="k", ls="--", label="codes used @ level 0")
    ax1.legend(loc="upper right", fontsize=7)
    ax2.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig
