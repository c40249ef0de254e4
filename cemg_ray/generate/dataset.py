"""Pre-tokenised training and evaluation tensors: no Python work per example in the train loop.

Training examples are every prefix of every training sequence: history ``s[max(0, j-n):j]`` ->
target ``s[j]`` for ``j >= 1``. Histories are right-aligned into ``[E, n*L + 1]`` (EOS last,
left padding), which suits encoder inputs and decoder-only prompts alike.
"""

from __future__ import annotations

import numpy as np
import torch

from cemg_ray.generate.tokens import EOS_ID, PAD_ID, TokenLayout


def history_matrix(histories: list[np.ndarray], codes: np.ndarray, layout: TokenLayout,
                   max_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded input ids and attention mask [B, max_items*L + 1] for item_idx histories."""
    L = layout.num_levels
    width = max_items * L + 1
    ids = np.full((len(histories), width), PAD_ID, dtype=np.int64)
    item_tokens = layout.encode_items(codes)  # [N, L]
    for r, hist in enumerate(histories):
        hist = np.asarray(hist, dtype=np.int64)[-max_items:]
        n = len(hist) * L
        if n:
            ids[r, width - 1 - n:width - 1] = item_tokens[hist].reshape(-1)
        ids[r, -1] = EOS_ID
    mask = (ids != PAD_ID).astype(np.int64)
    return ids, mask


def prefix_examples(train: list[np.ndarray], max_items: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(history, target) for every prefix of every training sequence."""
    hists, targets = [], []
    for seq in train:
        for j in range(1, len(seq)):
            hists.append(seq[max(0, j - max_items):j])
            targets.append(seq[j])
    return hists, np.asarray(targets, dtype=np.int64)


def build_tensors(histories: list[np.ndarray], targets: np.ndarray, codes: np.ndarray, layout: TokenLayout,
                  max_items: int) -> dict[str, np.ndarray]:
    ids, mask = history_matrix(histories, codes, layout, max_items)
    labels = layout.encode_items(codes[targets])
    return {"input_ids": ids.astype(np.int32), "attention_mask": mask.astype(np.int8),
            "labels": labels.astype(np.int32), "target_item": targets.astype(np.int64)}


def length_grouped_order(lengths: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """A random order whose consecutive ``batch_size`` slices hold histories of similar length.

    Beauty training histories fill 34.5 of 101 token slots on average; batches of similar lengths cut the padding the
    encoder computes on by about 3x. Grouping is transformers' (random mega-batches sorted by length).
    """
    from transformers.trainer_pt_utils import get_length_grouped_indices

    return torch.as_tensor(get_length_grouped_indices(lengths.tolist(), batch_size, generator=generator),
                           dtype=torch.long)


def trim_left_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the input columns that are padding in every row (histories are left-padded).

    Exact for T5 and decoder-only models alike: padded positions are masked, and relative
    positions between real tokens (and ``position_ids`` from the mask) do not change.
    """
    mask = batch["attention_mask"]
    width = int(mask.sum(1).max()) if len(mask) else mask.shape[1]
    if width >= mask.shape[1]:
        return batch
    return {**batch, "input_ids": batch["input_ids"][:, -width:], "attention_mask": mask[:, -width:]}


# --- the item-level generator (``train.history: items``): item_idx matrices, right-padded with -1 ---

def dense_windows(train: list[np.ndarray], max_items: int) -> list[np.ndarray]:
    """Windows of up to ``max_items + 1`` items, cut from the end of each sequence, that together hold every
    (history, next item) pair once: window ``w`` supervises ``w[1:]`` from ``w[:-1]``."""
    windows = []
    for seq in train:
        seq = np.asarray(seq, dtype=np.int64)
        end = len(seq)
        while end > 1:
            windows.append(seq[max(0, end - max_items - 1):end])
            end -= max_items
    return windows


def item_tensors(train: list[np.ndarray], max_items: int, objective: str) -> dict[str, np.ndarray]:
    """``items`` and ``labels`` [E, max_items] (-1 padded): the next item at every position (``dense``), or one
    example per prefix supervised at its last position only (``prefix``, the paper's objective)."""
    if objective == "dense":
        rows = dense_windows(train, max_items)
        inputs, labels = [w[:-1] for w in rows], [w[1:] for w in rows]
    elif objective == "prefix":
        hists, targets = prefix_examples(train, max_items)
        inputs = hists
        labels = [np.concatenate([np.full(len(h) - 1, -1, np.int64), [t]]) for h, t in zip(hists, targets)]
    else:
        raise ValueError(f"train.objective: unknown objective {objective!r}; expected 'dense' or 'prefix'")
    items = np.full((len(inputs), max_items), -1, dtype=np.int32)
    lab = np.full((len(inputs), max_items), -1, dtype=np.int32)
    for r, (x, y) in enumerate(zip(inputs, labels)):
        items[r, :len(x)] = x
        lab[r, :len(y)] = y
    return {"items": items, "labels": lab}


def item_eval_tensors(histories: list[np.ndarray], targets: np.ndarray, max_items: int) -> dict[str, np.ndarray]:
    """Validation histories [U, max_items] (-1 padded) and their targets for the item-level generator."""
    items = np.full((len(histories), max_items), -1, dtype=np.int32)
    for r, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-max_items:]
        items[r, :len(h)] = h
    return {"items": items, "target_item": np.asarray(targets, dtype=np.int64)}
