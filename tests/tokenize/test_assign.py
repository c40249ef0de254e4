"""`codes assign`: new items get unique codes from the trained pipeline, without retraining."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cemg_ray.data.catalog import DataError
from cemg_ray.tokenize.assign import assign_codes, existing_codes, read_new_items


def test_new_items_get_unique_codes_near_their_lookalikes(demo_run, tmp_path) -> None:
    cfg, store = demo_run
    items = store.read_parquet("data/items.parquet")
    codes_before = np.asarray(store.read_parquet("tokenize/codes.parquet").column("codes").to_pylist())
    rows = []
    for i in range(12):  # copies of catalog items (same text and picture) under new ids
        rows.append({"item_id": f"new-{i}", "text": items.column("text")[i].as_py(), "image_uri": None})
    rows.append({"item_id": items.column("item_id")[0].as_py(), "text": "already in the catalog"})
    rows.append({"item_id": "new-broken-image", "text": "x", "image_uri": str(tmp_path / "missing.jpg")})
    path = tmp_path / "new.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    report = assign_codes(cfg, store, read_new_items(str(path)))
    assert report["requested"] == 14 and report["already_coded"] == 1
    assert report["assigned"] == 13 and not report["unplaceable"]
    ids, codes = existing_codes(store)
    assert len(np.unique(codes, axis=0)) == len(codes)  # unique against the existing table
    added = codes[len(codes_before):]
    assert (added[:, -1] < store.read_json("tokenize/meta.json")["level_sizes"][-1]).all()
    # an item that reads like catalog item i usually lands on the same first-level code
    same_first = np.mean([added[i, 0] == codes_before[i, 0] for i in range(12)])
    assert same_first >= 0.5


def test_new_items_file_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_id": "a"}\n{not json\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        read_new_items(str(bad))
    noid = tmp_path / "noid.jsonl"
    noid.write_text('{"title": "x"}\n')
    with pytest.raises(DataError, match="item_id"):
        read_new_items(str(noid))
