"""The Python API: the README's example runs verbatim (on a demo run), and its errors name what is wrong."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from cemg_ray.api import RunError, open_run
from tests.conftest import REPO


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- python-api-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "README has no python-api-example block"
    return m.group(1)


def test_the_readme_example_runs_against_a_demo_run(demo_run, tmp_path, capsys) -> None:
    _, store = demo_run
    run_dir = tmp_path / "run"
    shutil.copytree(store.root_uri, run_dir)  # assign_codes adds to the run: keep the shared demo run as it is
    code = _readme_example().replace('"runs/demo"', repr(str(run_dir)))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "README.md:python-api-example", "exec"), {})  # noqa: S102 - our own README
    finally:
        os.chdir(cwd)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and lines[3] == "1"  # one new item assigned
    assert lines[4].startswith("{'new-1': [")


def test_the_api_ranks_like_serving_and_names_bad_input(demo_run, tmp_path) -> None:
    _, store = demo_run
    run = open_run(store.root_uri, model="sasrec")
    user = next(iter(run.user_history))
    ranked = run.recommend_for_users([user], k=5)[user]
    seen = {run.item_ids[i] for i in run.user_history[user]}
    assert len(ranked) == 5 and not {i for i, _ in ranked} & seen
    assert run.model_version.startswith("sasrec-")
    with pytest.raises(KeyError, match="not in the catalog: \\['nope'\\]"):
        run.recommend([["item00000", "nope"]])
    with pytest.raises(KeyError, match="user id\\(s\\) not in"):
        run.recommend_for_users(["nobody"])
    with pytest.raises(RunError, match="does not exist"):
        open_run(tmp_path / "missing")
    with pytest.raises(RunError, match="no manifest.json"):
        open_run(tmp_path)


def test_a_policy_is_asked_of_the_run_or_per_call_and_both_give_the_same_lists(demo_run) -> None:
    from serve_app.model_state import ModelState
    from serve_app.schemas import ServeConfig

    _, store = demo_run
    run = open_run(store.root_uri, model="cemg")
    dense = open_run(store.root_uri, policy="dense_all")
    assert dense.model == "cemg:dense_all" and dense.model_version.endswith("+dense_all")
    users = list(run.user_history)[:3]
    assert run.recommend_for_users(users, k=5, policy="dense_all") == dense.recommend_for_users(users, k=5)
    assert run.recommend_for_users(users, k=5) != dense.recommend_for_users(users, k=5)
    state = ModelState(ServeConfig(run_dir=store.root_uri, model="cemg"))  # serving's request-level policy
    histories = [run.user_history[u] for u in users]
    assert state.rank(histories, [5] * 3, [True] * 3, "dense_all") == dense.rank(histories, [5] * 3, [True] * 3)
    for w in range(40):  # a request may send any knobs: the views kept stay bounded
        run.recommender_for(f"hybrid(weight=0.{w + 10})")
    assert len(run._by_policy) <= 16
    with pytest.raises(ValueError, match="unknown decoding policy 'nope'"):
        run.recommend_for_users(users, policy="nope")
    with pytest.raises(ValueError, match="not a generator"):
        open_run(store.root_uri, model="sasrec").recommend_for_users(users, policy="beam")
