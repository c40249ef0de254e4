"""The run directory: one artifact store over local disk or S3, with atomic writes.

Every stage reads and writes through :class:`Store` so that the same code runs on a laptop
(``runs/demo``) and on a cluster (``s3://bucket/runs/beauty``). Writes are atomic: a local
file is written to a temporary sibling and renamed; an S3 object is serialised in memory and
uploaded in one request, so a killed writer never leaves a half object. Directory-shaped
artifacts (Parquet datasets, model folders) are only trusted once the stage manifest that
names them exists; the pipeline writes that manifest last.

Credentials are never read from config: pyarrow and boto3 use the standard AWS chain
(environment, profile, instance role). Only the endpoint and region may be configured.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig


class StoreError(RuntimeError):
    """An artifact is missing, unreadable or could not be written; the message names it."""


ENDPOINT_SOURCES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # environment, after the job's storage.endpoint_url


def _s3_endpoint(endpoint_url: str | None) -> tuple[str | None, str]:
    """(endpoint, where it was set): the job's ``storage.endpoint_url``, else the AWS environment's, else AWS's."""
    if endpoint_url:
        return endpoint_url, "storage.endpoint_url"
    for var in ENDPOINT_SOURCES:
        if os.environ.get(var):
            return os.environ[var], var
    return None, "AWS's endpoint for the region"


def _s3_region(region: str | None) -> str:
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def s3_unreachable(uri: str, endpoint_url: str | None = None, region: str | None = None,
                   timeout_s: float = 3.0) -> str | None:
    """Why the bucket of the ``s3://`` ``uri`` cannot be used, or None when its endpoint answers and it exists.

    Why: the store's S3 client retries an endpoint that does not answer for minutes and then stops a stage with
    a bare network message; one HEAD of the bucket (a single attempt, ``timeout_s`` to connect and to read) tells
    ``cemg-ray validate`` and ``run`` before anything starts. Credentials are the standard AWS chain's; without
    any the HEAD goes unsigned, since any answer at all shows the endpoint is there.
    """
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    endpoint, origin = _s3_endpoint(endpoint_url)
    if endpoint and "://" not in endpoint:
        endpoint = f"https://{endpoint}"  # the store's default scheme for an endpoint given as host:port
    bucket = uri.removeprefix("s3://").split("/", 1)[0]
    options = {"connect_timeout": timeout_s, "read_timeout": timeout_s, "retries": {"total_max_attempts": 1}}
    where = f"{endpoint} ({origin})" if endpoint else f"{origin} {_s3_region(region)}"
    for signed in (True, False):
        try:
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint, region_name=_s3_region(region),
                config=Config(**options) if signed else Config(signature_version=UNSIGNED, **options))
            client.head_bucket(Bucket=bucket)
            return None
        except NoCredentialsError:
            continue  # no credentials in the chain: ask unsigned, the answer still shows the endpoint is there
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket"):
                return f"bucket {bucket!r} does not exist at the S3 endpoint {where}"
            return None  # it answered (403 without the right to list: the stages' own calls will tell)
        except (BotoCoreError, ValueError) as exc:  # refused, timed out, DNS, TLS, a malformed endpoint URL
            return (f"the S3 endpoint {where} does not answer ({exc}; waited up to {timeout_s:g} s); check the "
                    f"endpoint (storage.endpoint_url or AWS_ENDPOINT_URL) and that the store is up")
    return None


def _s3_filesystem(endpoint_url: str | None, region: str | None) -> pafs.S3FileSystem:
    endpoint = _s3_endpoint(endpoint_url)[0]
    region = _s3_region(region)
    kwargs: dict[str, Any] = {"region": region}
    if endpoint:
        scheme = "https"
        if "://" in endpoint:
            scheme, endpoint = endpoint.split("://", 1)
        kwargs.update(endpoint_override=endpoint, scheme=scheme)
    return pafs.S3FileSystem(**kwargs)


def resolve_filesystem(uri: str, endpoint_url: str | None = None,
                       region: str | None = None) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path inside it)`` for a local path or an ``s3://`` URI."""
    if uri.startswith("s3://"):
        return _s3_filesystem(endpoint_url, region), uri[len("s3://"):].rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        raise StoreError(f"unsupported run_dir scheme in {uri!r}: use a local path or s3://bucket/prefix")
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())


class Store:
    """A run directory. Paths passed to methods are relative to its root (``"eval/metrics.json"``)."""

    def __init__(self, root: str, endpoint_url: str | None = None, region: str | None = None,
                 redirect: dict[str, str] | None = None):
        self.root_uri = root.rstrip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        # relative path prefix -> where it really lives (a stage's outputs while it runs: ``staged``)
        self.redirect = {k.strip("/"): v.strip("/") for k, v in (redirect or {}).items()}
        self.fs, self._base = resolve_filesystem(root, endpoint_url, region)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        if self.is_local:
            Path(self._base).mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_job(cls, cfg: JobConfig) -> Store:
        """The run directory of a job: ``run_dir`` with the job's storage endpoint and region."""
        return cls(cfg.run_dir, cfg.storage.endpoint_url, cfg.storage.region)

    def staged(self, outputs: tuple[str, ...], prefix: str) -> Store:
        """The same run directory with ``outputs`` (folders or files) read and written under ``prefix`` instead.

        A stage runs against such a view, so the outputs of its last good run stay in place, and readable,
        until the pipeline commits the new ones (``pipeline.commit_staged``).
        """
        return Store(self.root_uri, self.endpoint_url, self.region,
                     {**self.redirect, **{o.strip("/"): f"{prefix.strip('/')}/{o.strip('/')}" for o in outputs}})

    def _real(self, rel: str) -> str:
        for src, dst in self.redirect.items():
            if rel == src or rel.startswith(src + "/"):
                return dst + rel[len(src):]
        return rel

    def _apparent(self, real: str) -> str | None:
        """The path a redirected view shows for a real path (None: hidden behind a redirect)."""
        for src, dst in self.redirect.items():
            if real == dst or real.startswith(dst + "/"):
                return src + real[len(dst):]
        for src in self.redirect:
            if real == src or real.startswith(src + "/"):
                return None
        return real

    # -- paths -------------------------------------------------------------------------------
    def path(self, rel: str = "") -> str:
        """The path of ``rel`` inside :attr:`fs` (no scheme)."""
        rel = self._real(rel.strip("/"))
        return f"{self._base}/{rel}" if rel else self._base

    def uri(self, rel: str = "") -> str:
        """A full URI for tools that take one (Ray Data, HF): ``s3://...`` or an absolute path."""
        return f"s3://{self.path(rel)}" if not self.is_local else self.path(rel)

    def committed(self) -> Store:
        """The run directory without this view's redirects: what the last commit left (a stage's previous
        outputs, which its own staged view hides behind the empty staging folder)."""
        return Store(self.root_uri, self.endpoint_url, self.region) if self.redirect else self

    def committed_uri(self, rel: str = "") -> str:
        """The URI ``rel`` has once a staged stage commits (what reports and logs should name)."""
        return self.committed().uri(rel)

    def exists(self, rel: str) -> bool:
        info = self.fs.get_file_info(self.path(rel))
        return info.type != pafs.FileType.NotFound

    def is_dir(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.Directory

    def list(self, rel: str = "", recursive: bool = False) -> list[str]:
        """Relative paths of the files under ``rel`` (empty when it does not exist)."""
        selector = pafs.FileSelector(self.path(rel), allow_not_found=True, recursive=recursive)
        base = self.path() + "/"
        found = (self._apparent(i.path[len(base):]) for i in self.fs.get_file_info(selector)
                 if i.type == pafs.FileType.File)
        return sorted(p for p in found if p is not None)

    def delete(self, rel: str) -> None:
        """Remove a file or a directory tree; a missing path is not an error."""
        info = self.fs.get_file_info(self.path(rel))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(rel))
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path(rel))

    def move(self, src: str, dst: str) -> None:
        """Move a file or a directory tree to ``dst`` (replacing what is there); a missing ``src`` is not an error.

        Local: one rename. S3 has no rename: each object is copied, then the source deleted.
        """
        info = self.fs.get_file_info(self.path(src))
        if info.type == pafs.FileType.NotFound:
            return
        self.delete(dst)
        try:
            if self.is_local:
                Path(self.path(dst)).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.path(src), self.path(dst))
                return
            files = [src] if info.type == pafs.FileType.File else self.list(src, recursive=True)
            for rel in files:
                self.fs.copy_file(self.path(rel), self.path(dst + rel[len(src):]))
            self.delete(src)
        except OSError as exc:
            raise StoreError(f"could not move {self.uri(src)} to {self.uri(dst)}: {exc}") from exc

    # -- bytes -------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` atomically: readers see the old object or the whole new one."""
        target = self.path(rel)
        parent = target.rsplit("/", 1)[0]
        try:
            if self.is_local:
                Path(parent).mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=parent, prefix=".tmp-", suffix=".part")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, target)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
            else:
                # One in-memory payload, one upload: S3 makes the object visible only on success.
                with self.fs.open_output_stream(target) as out:
                    out.write(data)
        except OSError as exc:
            raise StoreError(f"could not write {self.uri(rel)}: {exc}") from exc

    def read_bytes(self, rel: str) -> bytes:
        with self._reading(rel):
            with self.fs.open_input_stream(self.path(rel)) as src:
                return src.read()

    @contextmanager
    def _reading(self, rel: str) -> Iterator[None]:
        """A missing artifact or an unreadable store named by the artifact's URI."""
        try:
            yield
        except FileNotFoundError as exc:
            raise StoreError(f"artifact {self.uri(rel)} does not exist; run the stage that writes it") from exc
        except OSError as exc:
            if "not found" in str(exc).lower() or "NoSuchKey" in str(exc):
                raise StoreError(f"artifact {self.uri(rel)} does not exist; run the stage that writes it") from exc
            raise StoreError(f"could not read {self.uri(rel)}: {exc}") from exc

    # -- typed helpers -----------------------------------------------------------------------
    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode())

    def read_json(self, rel: str) -> Any:
        raw = self.read_bytes(rel)
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise StoreError(f"{self.uri(rel)} is not valid JSON: {exc}") from exc

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode())

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode()

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        self.write_bytes(rel, buf.getvalue())

    def read_parquet(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        """The table, or only ``columns``: then only their column chunks are read (in place on a local disk, by
        ranged reads from S3), so the item table's images (2.8 GB at a million items) stay where they are when a
        stage wants the ids. An asked column the file lacks is left out (``artifacts`` names it and the stage to
        re-run)."""
        if columns is None:
            return pq.read_table(io.BytesIO(self.read_bytes(rel)))
        with self._reading(rel), self.fs.open_input_file(self.path(rel)) as src:
            return pq.ParquetFile(src).read(columns=columns)

    def write_tensors(self, rel: str, tensors: dict[str, np.ndarray],
                      metadata: dict[str, str] | None = None) -> None:
        """Save named arrays with safetensors: no pickle, safe to load from anywhere."""
        from safetensors.numpy import save

        arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        self.write_bytes(rel, save(arrays, metadata=metadata))

    def read_tensors(self, rel: str) -> dict[str, np.ndarray]:
        from safetensors.numpy import load

        return load(self.read_bytes(rel))

    def write_figure(self, rel: str, fig: Any) -> None:
        """Save a matplotlib figure as PNG."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        self.write_bytes(rel, buf.getvalue())

    # -- directories (model folders) ---------------------------------------------------------
    def upload_dir(self, local_dir: str | Path, rel: str) -> None:
        """Copy a local folder to ``rel``, replacing what was there, staged then swapped."""
        local_dir = Path(local_dir)
        if self.is_local:
            target = Path(self.path(rel))
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
            shutil.copytree(local_dir, staging)
            old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
            if target.exists():
                os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
            return
        self.delete(rel)
        for f in sorted(local_dir.rglob("*")):
            if f.is_file():
                self.write_bytes(f"{rel}/{f.relative_to(local_dir).as_posix()}", f.read_bytes())

    def download_dir(self, rel: str, local_dir: str | Path) -> Path:
        """Copy the folder ``rel`` to ``local_dir`` (returned); on local stores no copy is made."""
        if self.is_local:
            if not self.exists(rel):
                raise StoreError(f"artifact folder {self.uri(rel)} does not exist")
            return Path(self.path(rel))
        local_dir = Path(local_dir)
        files = self.list(rel, recursive=True)
        if not files:
            raise StoreError(f"artifact folder {self.uri(rel)} does not exist or is empty")
        prefix = rel.strip("/") + "/"
        for f in files:
            dest = local_dir / f[len(prefix):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(self.read_bytes(f))
        return local_dir

    @contextmanager
    def local_copy(self, rel: str) -> Iterator[Path]:
        """A local folder holding ``rel`` for libraries that only read from disk."""
        with tempfile.TemporaryDirectory(prefix="cemg-") as tmp:
            yield self.download_dir(rel, tmp)

    def __repr__(self) -> str:
        return f"Store({self.root_uri!r})"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
