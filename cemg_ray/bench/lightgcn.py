"""``cemg-ray bench lightgcn``: the stage's training step on a CSR adjacency against ``edge_index``.

Both paths are torch_geometric's ``LightGCN`` with the same weights and the same batches: the
reference normalises and scatters messages over ``edge_index`` on every call (the library's default),
the stage's path is handed ``Graph.adjacency()`` once (pre-normalised sparse CSR, ``normalize=False``).
Timed in one run: a BPR step, a full epoch with negative sampling, and the sampler alone (set lookups
against the vectorised ``searchsorted``). On the real Beauty training graph when its files are given,
a random graph of the same size otherwise.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from cemg_ray.bench import emit

if TYPE_CHECKING:
    from torch_geometric.nn import LightGCN

    from cemg_ray.collab.lightgcn import Graph


def beauty_graph(path: str | None, size: tuple[int, int, int] = (22363, 12101, 153776)) -> tuple[Graph, str]:
    """The Beauty training graph (leave-one-out train split) or a random one of ``size`` (Beauty's by default)."""
    from cemg_ray.collab.lightgcn import Graph

    if path and os.path.exists(path):
        from cemg_ray.data.loaders import load_catalog
        from cemg_ray.data.split import leave_one_out

        catalog = load_catalog("json", path)
        split = leave_one_out(catalog.sequences, catalog.num_items)
        users, items = split.train_pairs()
        return Graph(len(split.train), catalog.num_items, users, items), f"Beauty training graph ({path})"
    rng = np.random.default_rng(0)
    users, items, edges = size
    return Graph(users, items, rng.integers(0, users, edges), rng.integers(0, items, edges)), "random graph"


def _set_sampler(users: np.ndarray, num_items: int, seen: set, rng: np.random.Generator) -> np.ndarray:
    """The earlier sampler (a Python set lookup per sample), kept here as the reference."""
    neg = rng.integers(0, num_items, size=len(users))
    for _ in range(2):
        bad = np.fromiter(((u, n) in seen for u, n in zip(users.tolist(), neg.tolist())), bool, len(users))
        if not bad.any():
            break
        neg[bad] = rng.integers(0, num_items, size=int(bad.sum()))
    return neg


def run(path: str | None, dim: int, layers: int, batch: int, repeats: int,
        size: tuple[int, int, int] = (22363, 12101, 153776)) -> dict:
    from cemg_ray.collab.config import LightGCNConfig
    from cemg_ray.collab.lightgcn import build_model, sample_negatives

    graph, source = beauty_graph(path, size)
    cfg = LightGCNConfig(dim=dim, num_layers=layers, batch_size=batch)
    reference = build_model(graph, cfg, normalize=True)
    fast = build_model(graph, cfg)
    fast.load_state_dict(reference.state_dict())
    paths = {"edge_index": (reference, graph.edge_index()), "csr_adjacency": (fast, graph.adjacency())}
    keys = graph.positive_keys()
    seen = set(zip(graph.users.tolist(), graph.items.tolist()))
    n_edges = len(graph.users)

    def step(model: LightGCN, adj: torch.Tensor, idx: np.ndarray, neg: np.ndarray) -> None:
        u = torch.as_tensor(graph.users[idx], dtype=torch.long)
        pos = torch.as_tensor(graph.items[idx], dtype=torch.long) + graph.num_users
        ng = torch.as_tensor(neg, dtype=torch.long) + graph.num_users
        out = model(adj, torch.stack([torch.cat([u, u]), torch.cat([pos, ng])]))
        loss = model.recommendation_loss(out[:len(idx)], out[len(idx):], node_id=torch.unique(torch.cat([u, pos, ng])))
        loss.backward()

    rng = np.random.default_rng(0)
    idx = rng.permutation(n_edges)[:batch]
    neg = sample_negatives(graph.users[idx], graph.num_items, keys, rng)
    out: dict = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
                 "load_average_1m": round(os.getloadavg()[0], 2), "graph": source, "users": graph.num_users,
                 "items": graph.num_items, "edges": n_edges, "dim": dim, "layers": layers, "batch": batch,
                 "step_s": {}, "epoch_s": {}}
    for name, (model, adj) in paths.items():
        step(model, adj, idx, neg)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step(model, adj, idx, neg)
            times.append(time.perf_counter() - t0)
        out["step_s"][name] = min(times)
    for name, (model, adj) in paths.items():
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        perm = rng.permutation(n_edges)
        negs = sample_negatives(graph.users[perm], graph.num_items, keys, rng)
        for s in range(0, n_edges, batch):
            opt.zero_grad()
            step(model, adj, perm[s:s + batch], negs[s:s + batch])
            opt.step()
        out["epoch_s"][name] = time.perf_counter() - t0
    users_all = graph.users[rng.permutation(n_edges)]
    t0 = time.perf_counter()
    _set_sampler(users_all, graph.num_items, seen, rng)
    t_set = time.perf_counter() - t0
    t0 = time.perf_counter()
    sample_negatives(users_all, graph.num_items, keys, rng)
    t_vec = time.perf_counter() - t0
    out["sampler_s_per_epoch"] = {"python_set": t_set, "searchsorted": t_vec}
    out["ratios"] = {"step_edge_index_over_csr": out["step_s"]["edge_index"] / out["step_s"]["csr_adjacency"],
                     "epoch_edge_index_over_csr": out["epoch_s"]["edge_index"] / out["epoch_s"]["csr_adjacency"],
                     "sampler_set_over_searchsorted": t_set / max(t_vec, 1e-9)}
    return out


def _print(res: dict) -> None:
    print(f"LightGCN training on the {res['graph']}: {res['users']:,} users, {res['items']:,} items, "
          f"{res['edges']:,} edges, {res['dim']}-d, {res['layers']} layers, batch {res['batch']:,} "
          f"({res['machine']}; 1-min load {res['load_average_1m']})")
    for name in res["step_s"]:
        print(f"  {name:<14} step {1000 * res['step_s'][name]:8.1f} ms   epoch {res['epoch_s'][name]:7.2f} s")
    s = res["sampler_s_per_epoch"]
    print(f"  negative sampling per epoch: Python set {s['python_set']:.3f} s, searchsorted {s['searchsorted']:.3f} s")
    r = res["ratios"]
    print(f"  edge_index / CSR: step {r['step_edge_index_over_csr']:.2f}x, "
          f"epoch {r['epoch_edge_index_over_csr']:.2f}x; sampler {r['sampler_set_over_searchsorted']:.1f}x")


def _cmd(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args.data, args.dim, args.layers, args.batch_size, args.repeats)
    emit(res, args.json, _print)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lightgcn", help="LightGCN step and epoch: CSR adjacency vs edge_index, in one run")
    p.add_argument("--data", default=None, help="a Beauty folder in the json format (Beauty.inter.json); "
                                                "default: a random graph of Beauty's size")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)
