"""The artifact contract and the stage table: every stage declared once, its outputs with it."""

from __future__ import annotations

from cemg_ray import artifacts
from cemg_ray.stages import STAGES


def test_every_stage_is_declared_once_in_the_table_and_its_module_knows_no_runner() -> None:
    """Name, function, sections, dependencies and outputs live in cemg_ray/stages.py; a stage's module imports
    the kit (cemg_ray/stagekit.py), never the runner, and registers nothing."""
    import ast
    import importlib.util
    from pathlib import Path

    for st in STAGES.values():
        assert callable(st.run()) and st.doc, st.name
        assert all(isinstance(out, str) for out in st.outputs)
        path = Path(importlib.util.find_spec(st.function.split(":")[0]).origin)
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "cemg_ray.pipeline" not in imported, f"{path}: a stage imports the runner"
        decorators = [d for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) for d in n.decorator_list]
        assert not any(getattr(getattr(d, "func", d), "id", "") == "stage" for d in decorators), path
    assert artifacts.stage_marker("tokenize") == "_stages/tokenize.json"
    assert artifacts.owner("tokenize/codes.parquet") == "tokenize" and artifacts.owner("manifest.json") is None


def test_no_artifact_path_is_spelled_outside_the_contract_module() -> None:
    """Run-directory paths live in cemg_ray/artifacts.py only, so that a path changes in one place."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    folders = "|".join(sorted({out.split("/")[0] for st in STAGES.values() for out in st.outputs}
                              | {"baselines", artifacts.STAGE_MARKERS}))
    literal = re.compile(rf"[\"']({folders})/[\w./{{}}-]+[\"']")
    found = []
    for package in ("cemg_ray", "serve_app"):
        for path in sorted((root / package).rglob("*.py")):
            if path.name == "artifacts.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if literal.search(code) and '"""' not in code and "``" not in code:
                    found.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not found, "artifact paths outside cemg_ray/artifacts.py:\n" + "\n".join(found)


def test_typed_readers_name_the_missing_artifact_and_the_stage_that_writes_it(tmp_path) -> None:
    import pyarrow as pa
    import pytest

    from cemg_ray.store import Store

    store = Store(str(tmp_path / "run"))
    with pytest.raises(artifacts.ArtifactError, match=r"data/items.parquet not found; run its stage: .*--stages data"):
        artifacts.read_items(store)
    with pytest.raises(artifacts.ArtifactError, match="--stages popularity"):
        artifacts.read_popularity(store)
    with pytest.raises(artifacts.ArtifactError, match="not a run directory"):
        artifacts.read_manifest(store)
    store.write_parquet(artifacts.ITEMS, pa.table({"item_idx": [2, 0, 1], "item_id": ["c", "a", "b"]}))
    assert artifacts.read_items(store).column("item_id").to_pylist() == ["a", "b", "c"]  # item_idx order
    assert artifacts.num_items(store) == 3
    store.write_parquet(artifacts.SEQUENCES, pa.table({"user_id": ["u"]}))  # an older table without items
    with pytest.raises(artifacts.ArtifactError, match="no column.*items.*re-run the 'data' stage"):
        artifacts.read_sequences(store)
    artifacts.write_popularity(store, [3, 0, 1])
    assert artifacts.read_popularity(store).tolist() == [3, 0, 1]
    assert artifacts.owner("generate/model/model.safetensors") == "train" and artifacts.owner("manifest.json") is None
