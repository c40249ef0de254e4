"""The job schema: one typed document describes a whole run (dataset, run_dir, resources, stages).

YAML files in ``jobs/`` are instances of :class:`JobConfig`. Unknown keys are errors, a wrong
type names the expected one, and every error carries the file and the dotted key path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from cemg_ray.collab.config import LightGCNConfig
from cemg_ray.configbase import Section
from cemg_ray.data.formats import DatasetFormat
from cemg_ray.evaluate.config import SASRecConfig
from cemg_ray.export.config import ExportConfig
from cemg_ray.features.config import FeaturesConfig, PCAConfig
from cemg_ray.generate.config import DecodeConfig, TrainConfig
from cemg_ray.refresh.config import RefreshConfig
from cemg_ray.tokenize.config import TokenizeConfig


class SyntheticConfig(Section):
    """The embedded catalog with planted clusters (text, pixels and co-interaction)."""

    num_users: int = Field(600, ge=1)
    num_items: int = Field(300, ge=2)
    num_clusters: int = Field(6, ge=1)
    min_len: int = Field(5, ge=3)
    max_len: int = Field(14, ge=3)
    image_size: int = Field(32, ge=8)
    seed: int = 0


class DatasetConfig(Section):
    """Where the data comes from. ``path`` is a file or folder; see README 'Data' for the formats."""

    HASH_OMIT_WHEN_DEFAULT: ClassVar[frozenset[str]] = frozenset({"min_rating", "overview", "cpus"})

    name: str = "synthetic"
    format: DatasetFormat = "synthetic"
    path: str | None = None
    max_len: int = Field(20, ge=1)  # history truncation
    kcore: int = Field(5, ge=0)  # only for the raw Amazon format
    cold_start_max: int = Field(5, ge=0)  # a test item with <= this many training interactions is cold-start
    synthetic: SyntheticConfig = SyntheticConfig()
    images_dir: str | None = None  # optional folder that relative image paths resolve against
    min_rating: float | None = None  # movielens: keep ratings >= this as interactions (None: every rating)
    overview: str | None = None  # movielens: a CSV (movie_id, overview); None: found beside the files
    cpus: float = Field(1.0, gt=0)  # the Ray task that loads the data (the driver only waits)


class StorageConfig(Section):
    """S3-compatible endpoint and region. Credentials come only from the standard AWS chain."""

    endpoint_url: str | None = None
    region: str | None = None


class RayConfig(Section):
    address: str | None = None  # None: start a local cluster; "auto" or ray://... to join one
    num_cpus: int | None = Field(None, ge=1)  # for a local cluster only
    num_gpus: int | None = Field(None, ge=0)


class ColdStartFloor(Section):
    """A requirement on cold-start items that the default list must meet on the validation split."""

    reference: str = "sasrec"
    ratio: float = Field(1.5, gt=0)


class EvaluateConfig(Section):
    HASH_IGNORE: ClassVar[frozenset[str]] = frozenset({"num_actors", "cpus_per_actor", "gpus_per_actor"})

    models: list[str] = ["popularity"]
    ks: list[Annotated[int, Field(ge=1)]] = Field([5, 10, 20], min_length=1)
    split: Literal["test", "valid"] = "test"
    batch_size: int = Field(512, ge=1)
    # a user's history items are removed before the top-K, as the field's protocol and every user-facing path
    # (API, export, serving) do; false ranks them too (this project's figures before 2026-12-06)
    exclude_seen: bool = True
    # the lists the run chooses its default from (best validation NDCG@10, then HR@10; written to
    # eval/default_model.json), which serving, export and the Python API return when no model is named
    select_default: list[str] = []
    # a floor on cold-start items for that choice: only lists whose validation cold-start HR@10 is at least
    # ``ratio`` times the ``reference`` model's (also scored on validation) are eligible; none eligible: the best
    # overall, with a warning and ``floor_met: false`` in eval/default_model.json
    select_cold_start_floor: ColdStartFloor | None = None
    # N (default 2): users sharded over a Ray Data pool of up to N actors with the requests below (one to start,
    # more while the cluster has room), each ranking every list with the run's one predictor (api.Run, as the
    # export's actors and serving's replicas do) in one pass, the ranks reduced exactly in the driver (the same
    # figures to the last digit: tests/evaluate/test_distributed.py); 0: every user ranked in the driver's process
    num_actors: int = Field(2, ge=0)
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _floor_needs_candidates(self) -> EvaluateConfig:
        if self.select_cold_start_floor is not None and not self.select_default:
            raise ValueError("select_cold_start_floor constrains the choice of the default list, but "
                             "evaluate.select_default names no candidate lists")
        return self


SECRET_ERROR = "secret_in_value"  # a validation error whose message must not quote the value


class TrackingConfig(Section):
    """Experiment tracking with MLflow (docs/TRACKING.md): off by default, needs ``pip install "cemg-ray[tracking]"``.

    Each ``cemg-ray run`` becomes one MLflow run. ``uri: null`` uses ``$MLFLOW_TRACKING_URI`` when it is set, else a
    local store ``mlruns/`` beside a local run directory (in the working directory for an ``s3://`` one); a plain path
    names such a store folder; a URI with a scheme (``http://``, ``sqlite://``, ``databricks``) goes to MLflow as is.
    """

    enabled: bool = False
    uri: str | None = None
    experiment: str | None = None  # None: the job's name

    @field_validator("uri")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        # the resolved config goes to manifest.json and to the run's params: a password there would be published
        if value and "://" in value and urlsplit(value).password is not None:
            raise PydanticCustomError(  # its own type: the error line must not echo the value back
                SECRET_ERROR, "a password in the tracking URI would be written to manifest.json and the logs; give "
                "credentials through MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN")
        return value


class JobConfig(Section):
    name: str = "cemg"
    run_dir: str = "runs/demo"
    dataset: DatasetConfig = DatasetConfig()
    storage: StorageConfig = StorageConfig()
    ray: RayConfig = RayConfig()
    features: FeaturesConfig = FeaturesConfig()
    pca: PCAConfig = PCAConfig()
    lightgcn: LightGCNConfig = LightGCNConfig()
    tokenize: TokenizeConfig = TokenizeConfig()
    train: TrainConfig = TrainConfig()
    decode: DecodeConfig = DecodeConfig()
    sasrec: SASRecConfig = SASRecConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    export: ExportConfig = ExportConfig()
    tracking: TrackingConfig = TrackingConfig()
    refresh: RefreshConfig = RefreshConfig()  # cemg-ray refresh (cemg_ray/refresh/); no stage reads it
    stages: list[str] | None = None  # default: every stage in pipeline order

    def section_hash(self, *sections: str) -> str:
        """A stable hash of the named sections, so a stage re-runs only when they change.

        Fields in ``HASH_IGNORE`` (checkpoint cadence and the like) never count. Fields a section lists in
        ``HASH_OMIT_WHEN_DEFAULT`` (options added after run directories
        existed) count only when set, so adding an option does not invalidate every earlier run.
        """
        payload = {s: _hash_payload(getattr(self, s)) for s in sections}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _hash_payload(section: Section) -> dict[str, Any]:
    payload = section.model_dump(mode="json")
    for name in getattr(section, "HASH_IGNORE", ()):  # how a stage runs, not what it computes
        payload.pop(name, None)
    for name in getattr(section, "HASH_OMIT_WHEN_DEFAULT", ()):
        if getattr(section, name) == type(section).model_fields[name].default:
            payload.pop(name, None)
    return payload


class ConfigError(ValueError):
    """A job file is invalid; ``errors`` holds one ``file: key.path: message`` line per problem."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__("\n".join(errors))


def _format_errors(source: str, exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in _without_union_tags(err["loc"])) or "<root>"
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key (not part of the job schema)"
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"]
            if "input" in err and kind not in ("literal_error", SECRET_ERROR):
                msg += f" (got {type(err['input']).__name__} {err['input']!r})"
        lines.append(f"{source}: {loc}: {msg}")
    return lines


def _without_union_tags(loc: tuple) -> list:
    """``decode.policies.NAME.KIND.knob`` -> ``decode.policies.NAME.knob``: pydantic puts a discriminated union's
    tag in the path, which is not a key the user wrote."""
    from cemg_ray.generate.policy import KINDS

    parts = list(loc)
    for i in range(len(parts) - 2):
        if parts[i] == "policies" and parts[i + 2] in KINDS:
            del parts[i + 2]
            break
    return parts


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a","b","c"], value), the value parsed as YAML (numbers, lists, null)."""
    if "=" not in item:
        raise ConfigError("--set", [f"--set: {item!r}: expected key.path=value"])
    key, raw = item.split("=", 1)
    path = key.strip().split(".")
    if not all(part.strip() for part in path):
        raise ConfigError("--set", [f"--set: {item!r}: the key before '=' is empty or has an empty part; "
                                    "expected key.path=value, e.g. train.epochs=5"])
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except (yaml.YAMLError, ValueError):  # not YAML (or an impossible date): the schema judges the string
        value = raw
    return path, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError("--set", [f"--set: {'.'.join(path)}: {part} is not a section"])
            node = nxt
        node[path[-1]] = value
    return raw


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


MAX_JOB_BYTES = 1 << 20  # a job file is a few kB; anything near this is not one


class _JobLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicated keys and aliases (no silent overwrite, no alias bombs)."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:  # PyYAML's signature
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"line {event.start_mark.line + 1}: aliases (*{event.anchor}) are not "
                                 "allowed in job files")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # PyYAML's signature
        keys = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in keys:
                raise yaml.YAMLError(f"line {key_node.start_mark.line + 1}: duplicated key {key!r}")
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(p: Path, seen: tuple[Path, ...] = (), referenced_by: str | None = None) -> dict[str, Any]:
    """A job file as a dict; ``extends: other.yaml`` (relative to the file) is merged under it."""
    source = str(p)
    where = f" (extends: in {referenced_by})" if referenced_by else ""
    if not p.exists():
        raise ConfigError(source, [f"{source}: file not found{where}"])
    if not p.is_file():
        raise ConfigError(source, [f"{source}: not a file{where}"])
    if p.stat().st_size > MAX_JOB_BYTES:
        raise ConfigError(source, [f"{source}: {p.stat().st_size:,} bytes is too large for a job file "
                                   f"(at most {MAX_JOB_BYTES:,})"])
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"{source}: not UTF-8 text (byte {exc.start})"]) from None
    try:
        loaded = yaml.load(text, Loader=_JobLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date YAML cannot build (2026-13-40)
        raise ConfigError(source, [f"{source}: not valid YAML: {exc}"]) from None
    if loaded is None:
        raise ConfigError(source, [f"{source}: the job file is empty (a job needs at least a name or run_dir)"])
    if not isinstance(loaded, dict):
        raise ConfigError(source, [f"{source}: <root>: expected a mapping, got {type(loaded).__name__}"])
    parent = loaded.pop("extends", None)
    if parent is None:
        return loaded
    if not isinstance(parent, str):
        raise ConfigError(source, [f"{source}: extends: expected a file name (got {type(parent).__name__})"])
    base_path = (p.parent / parent).resolve()
    if base_path in seen:
        raise ConfigError(source, [f"{source}: extends: {parent} includes itself"])
    return deep_merge(_read_yaml(base_path, (*seen, p.resolve()), source), loaded)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> JobConfig:
    """Read and validate a job YAML (``None``: the embedded demo job), then apply ``--set``s."""
    source = str(path) if path else "<default>"
    raw: dict[str, Any] = _read_yaml(Path(path)) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, _format_errors(source, exc)) from exc
