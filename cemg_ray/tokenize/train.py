"""Joint training of the fusion layer and the RQ-VAE (Eq. 4) on the catalog's item vectors."""

from __future__ import annotations

import logging
import time

import torch
from tqdm.auto import tqdm

from cemg_ray.tokenize.config import TokenizeConfig
from cemg_ray.tokenize.inputs import ItemInputs
from cemg_ray.tokenize.model import Tokenizer

log = logging.getLogger("cemg_ray")


def fit_tokenizer(inputs: ItemInputs, cfg: TokenizeConfig) -> tuple[Tokenizer, list[dict]]:
    """Train and return the tokenizer plus one log row per epoch (losses, usage, resets)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    image, text = torch.as_tensor(inputs.image), torch.as_tensor(inputs.text)
    collab, present = torch.as_tensor(inputs.collab), torch.as_tensor(inputs.present)
    n = len(image)
    tok = Tokenizer(image.shape[1], collab.shape[1], cfg)
    if cfg.kmeans_init:
        with torch.no_grad():
            x, _ = tok.fuse(image, text, collab, present)
            tok.rqvae.quantizer.kmeans_init(tok.rqvae.encoder(x), cfg.seed)
    opt = torch.optim.AdamW(tok.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict] = []
    stop_resets = int(cfg.epochs * 0.9)  # let the codes settle at the end
    bar = tqdm(range(cfg.epochs), desc="rq-vae", unit="epoch", mininterval=5, leave=False, disable=None)  # a tty only
    for epoch in bar:
        t0 = time.perf_counter()
        tok.train()
        perm = torch.randperm(n, generator=gen)
        usage = torch.zeros(cfg.num_levels, cfg.codebook_size, dtype=torch.long)
        sums = {"loss": 0.0, "recon": 0.0, "quant": 0.0, "div": 0.0}
        residuals: list[list[torch.Tensor]] = [[] for _ in range(cfg.num_levels)]
        steps = 0
        for s in range(0, n, cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            x, _ = tok.fuse(image[idx], text[idx], collab[idx], present[idx])
            out = tok.rqvae(x, cfg.commitment_beta, cfg.diversity_temperature)
            loss = out["recon"] + cfg.lambda_q * out["quant"] + cfg.lambda_d * out["div"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            for lvl in range(cfg.num_levels):
                usage[lvl] += torch.bincount(out["codes"][:, lvl], minlength=cfg.codebook_size)
                residuals[lvl].append(out["residuals"][lvl])
            for key in ("recon", "quant", "div"):
                sums[key] += out[key].item()
            sums["loss"] += loss.item()
            steps += 1
        reset = 0
        if cfg.dead_code_reset and epoch < stop_resets:
            reset = tok.rqvae.quantizer.reset_dead(usage, [torch.cat(r) for r in residuals], gen)
        row = {"epoch": epoch, **{k: v / steps for k, v in sums.items()},
               "used_level0": int((usage[0] > 0).sum()), "dead_reset": reset,
               "epoch_s": round(time.perf_counter() - t0, 4)}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", used0=row["used_level0"], refresh=False)
        if epoch % max(1, cfg.epochs // 10) == 0 or epoch == cfg.epochs - 1:
            log.info("rq-vae epoch %d: loss %.4f recon %.4f quant %.4f div %.4f used@0 %d reset %d", epoch,
                     row["loss"], row["recon"], row["quant"], row["div"], row["used_level0"], reset)
    tok.eval()
    return tok, history


def fit_from_store(cfg: dict, store: dict, dataset: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """The tokenizer trained on a run's item inputs read from its store: (weights, {"history": epoch log}); the
    tokenize stage runs it in a Ray Train worker (``raytrain.train_in_worker``)."""
    from cemg_ray.data.split import load_split
    from cemg_ray.store import Store
    from cemg_ray.tokenize.inputs import load_inputs

    tcfg = TokenizeConfig(**cfg)
    run = Store(**store)
    split = load_split(run, dataset["max_len"], dataset["cold_start_max"])
    # the split's item count (``artifacts.num_items``), not the item table read again: decoding its text and image
    # columns took 1.2 GB at 100,000 items, 650 MB of it kept by the allocator through training
    inputs = load_inputs(run, split.num_items, split.train_counts, tcfg.use_image, tcfg.use_text, tcfg.use_collab,
                         tcfg.cold_collab_neighbours, collab_source=tcfg.collab_source)
    tok, history = fit_tokenizer(inputs, tcfg)
    return tok.state_dict(), {"history": history}
