import io

import numpy as np
from PIL import Image

from cemg_ray.config import SyntheticConfig
from cemg_ray.data.synthetic import make_catalog


def test_deterministic_and_structured():
    a, b = make_catalog(SyntheticConfig(seed=3)), make_catalog(SyntheticConfig(seed=3))
    assert a.items.equals(b.items) and all((x == y).all() for x, y in zip(a.sequences, b.sequences))
    cluster = np.array(a.items.column("cluster"))
    # co-interaction: consecutive items mostly share a cluster (10% excursions, 6 clusters)
    same = np.mean([cluster[s[i]] == cluster[s[i + 1]] for s in a.sequences for i in range(len(s) - 1)])
    assert same > 0.7
    # the text names the cluster's noun
    texts = a.items.column("text").to_pylist()
    nouns = {c: texts[np.flatnonzero(cluster == c)[0]].split()[2] for c in range(6)}
    assert len(set(nouns.values())) == 6
    # pixels: mean colour separates clusters
    img = np.asarray(Image.open(io.BytesIO(a.items.column("image")[0].as_py())))
    assert img.shape == (32, 32, 3)


def test_every_user_has_min_len_and_no_repeats():
    cat = make_catalog(SyntheticConfig(num_users=200, num_items=50, seed=1))
    assert all(len(s) >= 5 and len(set(s.tolist())) == len(s) for s in cat.sequences)


def test_cdf_draws_equal_numpys_weighted_choice_for_the_same_seed():
    from cemg_ray.data.synthetic import choice_cdf, draw_index

    weights = 1.0 / np.arange(1, 501) ** 1.1
    cdf = choice_cdf(weights)
    ours, numpys = np.random.default_rng(7), np.random.default_rng(7)
    drawn = [draw_index(cdf, ours) for _ in range(2000)]
    assert drawn == [int(numpys.choice(500, p=weights / weights.sum())) for _ in range(2000)]
