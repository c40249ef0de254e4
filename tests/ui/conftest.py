"""The UI's fixtures: the page's application on the session's demo run, served by a real uvicorn on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ui.server import serve


@pytest.fixture(scope="session")
def ui_view(demo_run):
    """The session's demo run opened as the page sees it."""
    from cemg_ray.ui.data import RunView

    _, store = demo_run
    return RunView(store.root_uri)


@pytest.fixture(scope="session")
def ui_url(ui_view) -> Iterator[str]:
    """Base URL of the page's application on the demo run."""
    from cemg_ray.ui.app import create_app

    url, stop = serve(create_app(ui_view))
    yield url
    stop()


@pytest.fixture(scope="session")
def oracle(demo_run):
    """The run opened independently through the Python API: what the page must agree with."""
    from cemg_ray.api import open_run

    _, store = demo_run
    return open_run(store.root_uri)


@pytest.fixture(scope="session")
def expected_items(demo_run) -> dict[str, dict]:
    """Per item id, from the artifacts by hand: title, image bytes and cold-start flag (<= cold_start_max)."""
    import numpy as np
    import pyarrow.parquet as pq

    cfg, store = demo_run
    items = pq.read_table(f"{store.root_uri}/data/items.parquet").to_pylist()
    seqs = pq.read_table(f"{store.root_uri}/data/sequences.parquet").column("items").to_pylist()
    counts = np.zeros(len(items), dtype=np.int64)
    for s in seqs:
        if len(s) >= 3:  # leave-one-out: the last two are validation and test, the rest training
            np.add.at(counts, s[:-2], 1)
    return {r["item_id"]: {"title": r["title"], "image": r["image"], "train_interactions": int(counts[r["item_idx"]]),
                           "cold_start": bool(counts[r["item_idx"]] <= cfg.dataset.cold_start_max)} for r in items}
