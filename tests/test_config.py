from pathlib import Path

import pytest

from cemg_ray.config import ConfigError, load_config

JOBS = sorted((Path(__file__).resolve().parents[1] / "jobs").glob("*.yaml"))


@pytest.mark.parametrize("job", JOBS, ids=[p.name for p in JOBS])
def test_shipped_jobs_validate(job):
    cfg = load_config(job)
    assert cfg.run_dir


def test_unknown_key_is_an_error_with_file_and_path(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text("run_dir: x\ntokenize:\n  codebook_sizes: 3\n  lambda_q: 0.25\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert err.value.errors == [f"{p}: tokenize.codebook_sizes: unknown key (not part of the job schema)"]


def test_wrong_type_names_expected_type_and_every_error_is_reported(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text("tokenize:\n  num_levels: four\ntrain:\n  lr: [1]\ndataset:\n  format: csv\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    lines = err.value.errors
    assert len(lines) == 3
    assert any("tokenize.num_levels" in x and "integer" in x and "'four'" in x for x in lines)
    assert any("train.lr" in x and "number" in x for x in lines)
    assert any("dataset.format" in x and "synthetic" in x for x in lines)


def test_overrides_apply_and_parse_yaml_values():
    cfg = load_config(None, ["tokenize.codebook_size=64", "evaluate.ks=[1,2]", "dataset.path=null",
                             "run_dir=s3://bucket/run"])
    assert cfg.tokenize.codebook_size == 64 and cfg.evaluate.ks == [1, 2] and cfg.dataset.path is None
    assert cfg.run_dir == "s3://bucket/run"
    with pytest.raises(ConfigError, match="tokenize.nope"):
        load_config(None, ["tokenize.nope=1"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(None, ["tokenize"])
    for malformed in ("=5", "a..b=5", " =x", "train.=3"):  # a malformed --set, not an "unknown key <root>"
        with pytest.raises(ConfigError, match="key before '=' is empty") as err:
            load_config(None, [malformed])
        assert repr(malformed) in str(err.value)


def test_missing_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(p)


def test_section_hash_changes_only_with_its_sections():
    a = load_config(None)
    b = load_config(None, ["train.lr=0.5"])
    assert a.section_hash("tokenize") == b.section_hash("tokenize")
    assert a.section_hash("train") != b.section_hash("train")


def test_extends_merges_the_base_job_and_catches_cycles(tmp_path) -> None:
    (tmp_path / "base.yaml").write_text("name: base\ntokenize:\n  codebook_size: 64\n  epochs: 3\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\ntokenize:\n  use_guide: false\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.name, cfg.tokenize.codebook_size, cfg.tokenize.epochs, cfg.tokenize.use_guide) == \
        ("child", 64, 3, False)
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")


@pytest.mark.parametrize(("override", "key"), [
    ("tokenize.codebook_size=0", "tokenize.codebook_size"), ("tokenize.num_levels=0", "tokenize.num_levels"),
    ("train.batch_size=-1", "train.batch_size"), ("train.batch_size=true", "train.batch_size"),
    ("lightgcn.dim=0", "lightgcn.dim"), ("dataset.max_len=-1", "dataset.max_len"), ("ray.num_cpus=-2", "ray.num_cpus"),
    ("train.dropout=1.5", "train.dropout"), ("decode.policies.cold_share.share=2", "decode.policies.cold_share.share"),
    ("train.max_train_s=0", "train.max_train_s"), ("sasrec.epochs=0", "sasrec.epochs"),
    ("tokenize.hidden_dims=[64,0]", "tokenize.hidden_dims.1"), ("evaluate.ks=[]", "evaluate.ks"),
])
def test_sizes_counts_and_rates_are_bounded_and_the_key_is_named(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert len(err.value.errors) == 1 and err.value.errors[0].startswith(f"<default>: {key}: "), err.value.errors


def test_generator_layout_options_must_fit_together():
    with pytest.raises(ConfigError, match="train.backbone: decoder"):
        load_config(None, ["train.history=items"])
    cfg = load_config(None, ["train.backbone=decoder", "train.history=items", "train.objective=dense"])
    assert cfg.train.objective == "dense"


@pytest.mark.parametrize(("text", "message"), [
    ("", "the job file is empty"), ("# only a comment\n", "the job file is empty"),
    ("name: a\nname: b\n", "line 2: duplicated key 'name'"),
    ("a: &x [1, 2]\nb: *x\n", "aliases (*x) are not allowed"),
])
def test_empty_duplicated_and_aliased_job_files_are_rejected(tmp_path, text, message):
    p = tmp_path / "job.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert message in err.value.errors[0] and err.value.errors[0].startswith(str(p))


def test_unreadable_job_files_are_named(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not a file"):
        load_config(tmp_path)
    child = tmp_path / "child.yaml"
    child.write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(child)
    assert err.value.errors == [f"{tmp_path / 'missing.yaml'}: file not found (extends: in {child})"]


def test_export_date_is_accepted_as_a_yaml_date():
    assert load_config(None, ["export.date=2026-11-25"]).export.date == "2026-11-25"
    with pytest.raises(ConfigError, match="export.date"):
        load_config(None, ["export.date=2026-13-40"])


def test_checkpoint_cadence_does_not_change_what_a_stage_computes(tmp_path) -> None:
    from cemg_ray.config import load_config
    from cemg_ray.stagekit import stage_hash

    base = load_config(None, [f"run_dir={tmp_path}"])
    cadence = load_config(None, [f"run_dir={tmp_path}", "lightgcn.checkpoint_every_s=0"])
    epochs = load_config(None, [f"run_dir={tmp_path}", "lightgcn.epochs=7"])
    assert stage_hash(base, "lightgcn") == stage_hash(cadence, "lightgcn")
    assert stage_hash(base, "lightgcn") != stage_hash(epochs, "lightgcn")


def test_a_cold_start_floor_without_candidate_lists_is_an_error():
    with pytest.raises(ConfigError, match="select_cold_start_floor.*select_default names no candidate"):
        load_config(Path("jobs/demo.yaml"), ["evaluate.select_default=[]",
                                             "evaluate.select_cold_start_floor={reference: sasrec, ratio: 1.5}"])
    cfg = load_config(Path("jobs/demo.yaml"), ["evaluate.select_cold_start_floor={reference: sasrec, ratio: 1.5}"])
    assert cfg.evaluate.select_cold_start_floor.ratio == 1.5
