"""Loading a served model from a run directory, local or on S3 (a local moto server), and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.model_state import LoadError, ModelState
from serve_app.schemas import ServeConfig


def test_run_dir_on_s3_serves_the_same_lists_as_on_disk(trained_run, s3_bucket) -> None:
    from cemg_ray.store import Store

    run_dir, _ = trained_run
    uri = f"{s3_bucket}/runs/small"
    Store(uri).upload_dir(run_dir, "")
    local = ModelState(ServeConfig(run_dir=str(run_dir), model="sasrec"))
    remote = ModelState(ServeConfig(run_dir=uri, model="sasrec"))
    histories = [np.array([0, 1, 2]), np.array([5]), np.zeros(0, np.int64)]
    assert remote.rank(histories, [5, 3, 4], [True] * 3) == local.rank(histories, [5, 3, 4], [True] * 3)
    assert remote.model_version == local.model_version and remote.metadata()["run_dir"] == uri


def test_exclusion_keeps_k_items_and_user_history_is_the_full_sequence(trained_run) -> None:
    state = ModelState(ServeConfig(run_dir=str(trained_run[0]), model="sasrec"))
    user, seq = max(state.user_history.items(), key=lambda kv: len(kv[1]))
    resolved = state.resolve(user, None)
    assert resolved.error is None and resolved.history.tolist() == seq.tolist()
    (ranked,) = state.rank([resolved.history], [20], [True])
    seen = {state.item_ids[i] for i in seq}
    assert len(ranked) == 20 and not {i for i, _ in ranked} & seen


def test_missing_run_dir_and_missing_stage_are_clear_errors(trained_run, tmp_path) -> None:
    with pytest.raises(LoadError, match="does not exist"):
        ModelState(ServeConfig(run_dir=str(tmp_path / "nope"), model="sasrec"))
    assert not (tmp_path / "nope").exists()  # a typo does not create an empty run directory
    with pytest.raises(LoadError, match="no manifest.json"):
        ModelState(ServeConfig(run_dir=str(tmp_path), model="sasrec"))
    with pytest.raises(LoadError, match="needs the 'train' stage"):
        ModelState(ServeConfig(run_dir=str(trained_run[0]), model="cemg"))
