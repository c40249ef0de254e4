"""Fixtures of the feature tests: a small synthetic catalog with broken rows, tiny random encoders."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cemg_ray.features.config import FeaturesConfig

# Tiny seeded random encoders built from a config in code: fast, offline, deterministic.
TINY = FeaturesConfig(text={"model": "tiny-random-bert"}, image={"model": "tiny-random-vit", "image_size": 32},
                      batch_size=8, num_actors=2, cpus_per_actor=0.5)
CORRUPT, NO_IMAGE, EMPTY_TEXT, NULL_TEXT = 3, 5, 7, 9


@pytest.fixture(scope="session")
def catalog() -> pa.Table:
    """40 synthetic items (PNG bytes + text); item 3 has corrupt bytes, 5 no image, 7 and 9 no text."""
    from cemg_ray.config import SyntheticConfig
    from cemg_ray.data.synthetic import make_catalog

    table = make_catalog(SyntheticConfig(num_users=20, num_items=40, num_clusters=4)).items
    images = table.column("image").to_pylist()
    texts = table.column("text").to_pylist()
    images[CORRUPT] = b"\x89PNG\r\n\x1a\n but not really an image"
    images[NO_IMAGE] = None
    texts[EMPTY_TEXT] = "   "
    texts[NULL_TEXT] = None
    table = table.set_column(table.schema.get_field_index("image"), "image", pa.array(images, pa.binary()))
    return table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))


@pytest.fixture(scope="module")
def local_ray():
    """A private 2-CPU Ray cluster for this module (never joins another cluster on the machine)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
