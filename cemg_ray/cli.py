"""The ``cemg-ray`` command: validate and run jobs, inspect data, assign codes, benchmark, export."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shlex
import sys

from cemg_ray import artifacts, console
from cemg_ray.data.formats import FILE_FORMATS

# Modules that add their own subcommands: each exposes ``add_parser(subparsers)``.
COMMAND_MODULES = ["cemg_ray.tokenize.cli", "cemg_ray.export.cli", "cemg_ray.ablate", "cemg_ray.ui.cli",
                   "cemg_ray.refresh.cli"]
BENCH_MODULES = ["cemg_ray.bench.features", "cemg_ray.bench.decode", "cemg_ray.bench.serving",
                 "cemg_ray.bench.export", "cemg_ray.bench.lightgcn", "cemg_ray.bench.train", "cemg_ray.bench.growth",
                 "cemg_ray.bench.pca", "cemg_ray.bench.data", "cemg_ray.bench.split"]


def _cmd_validate(args: argparse.Namespace) -> int:
    from cemg_ray.config import ConfigError, load_config

    bad = 0
    for path in args.jobs:
        try:
            cfg = load_config(path, args.set)
            from cemg_ray.pipeline import resolve_stages
            from cemg_ray.preflight import preflight

            stages = resolve_stages(cfg, None)
            if not args.schema_only:
                preflight(cfg, stages, str(path))
            print(f"{path}: ok ({cfg.name}, run_dir={cfg.run_dir})")
        except ConfigError as exc:
            bad += 1
            for line in exc.errors:
                print(line, file=sys.stderr)
        except OSError as exc:
            bad += 1
            print(f"{path}: {_message(exc)}", file=sys.stderr)
        except KeyError as exc:
            bad += 1
            print(f"{path}: stages: {exc.args[0]}", file=sys.stderr)
    return 2 if bad else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from cemg_ray.config import load_config
    from cemg_ray.pipeline import run_pipeline

    overrides = list(args.set)
    if args.address:
        overrides.append(f"ray.address={args.address}")
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    cfg = load_config(args.job, overrides)  # a ConfigError reaches main(): its lines, exit 2
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    log_file = console.log_path(cfg.run_dir, cfg.name)
    console.configure(args.verbose, log_file)
    from cemg_ray.pipeline import resolve_stages
    from cemg_ray.preflight import preflight

    preflight(cfg, resolve_stages(cfg, stages), str(args.job or "<default>"))
    from cemg_ray.tracking import track

    console.progress("job %s: %d stage(s) into %s; log: %s%s", cfg.name, len(resolve_stages(cfg, stages)),
                     cfg.run_dir, log_file, "" if args.verbose else " (--verbose: everything here)")
    with track(cfg):  # with tracking.enabled: one MLflow run, logged when the job ends, also on failure
        manifest = run_pipeline(cfg, stages, force=args.force)
    from cemg_ray.store import Store

    store = Store.for_job(cfg)
    total = sum(info.get("wall_s_now", info.get("wall_s", 0.0)) for info in manifest["stages"].values())
    print(f"\ndone in {total:.1f}s; run directory: {store.uri()}")
    if store.exists(artifacts.METRICS):
        print(f"test figures ({store.uri(artifacts.METRICS)}; report: {store.uri(artifacts.EVAL_REPORT)}):")
        for line in console.figures_table(store.read_json(artifacts.METRICS)):
            print(f"  {line}")
    return 0


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from cemg_ray.data.catalog import DataError
    from cemg_ray.data.loaders import detect_format, load_catalog

    try:
        fmt = args.format or detect_format(args.path)
        catalog = load_catalog(fmt, args.path, kcore_k=args.kcore)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = catalog.stats()
    if args.json:
        print(json.dumps({"format": fmt, **stats, "skipped": catalog.report.to_dict()["skipped"]}, indent=2))
        return 0
    print(f"{args.path} ({fmt})")
    for key in ("users", "items", "interactions"):
        print(f"  {key:<18}{stats[key]:>12,}")
    print(f"  {'avg length':<18}{stats['avg_length']:>12.3f}  (min {stats['min_length']}, max {stats['max_length']})")
    print(f"  {'sparsity':<18}{stats['sparsity'] * 100:>11.4f}%")
    print(f"  {'items with text':<18}{stats['items_with_text']:>12,}")
    print(f"  {'items with image':<18}{stats['items_with_image']:>12,}")
    skipped = catalog.report.to_dict()
    print(f"  {'skipped rows':<18}{skipped['skipped_total']:>12,}  {skipped['skipped'] or ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cemg-ray", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="everything on the console (Ray's lines, the workers' output)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check job YAMLs against the schema; every error with its key path")
    p.add_argument("jobs", nargs="+", help="job YAML files")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a key")
    p.add_argument("--schema-only", action="store_true",
                   help="skip the checks against this machine (paths, run directory): for a cluster's job file")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("run", help="run a job's stages in order (skips stages already done)")
    p.add_argument("job", nargs="?", default=None, help="job YAML (default: the embedded demo job)")
    p.add_argument("--stages", help="comma-separated stages to run (default: all, in pipeline order)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a key")
    p.add_argument("--address", help="Ray cluster address (default: start a local cluster)")
    p.add_argument("--run-dir", help="override run_dir (local path or s3://bucket/prefix)")
    p.add_argument("--force", action="store_true", help="re-run stages even when their outputs exist")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("data", help="inspect datasets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    s = dsub.add_parser("stats", help="users, items, interactions, lengths, text and image coverage")
    s.add_argument("path", help="dataset file or folder")
    s.add_argument("--format", choices=FILE_FORMATS,
                   help="default: detected")
    s.add_argument("--kcore", type=int, default=5, help="k-core filter for the amazon format")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_data_stats)

    for name in COMMAND_MODULES:
        mod = importlib.import_module(name)
        mod.add_parser(sub)

    p = sub.add_parser("bench", help="benchmarks that print figures and ratios measured in one run")
    bsub = p.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    for name in BENCH_MODULES:
        mod = importlib.import_module(name)
        mod.add_parser(bsub)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Failures a user can cause and fix (config, data, store, network): a message and exit 2."""
    from cemg_ray.config import ConfigError
    from cemg_ray.data.catalog import DataError
    from cemg_ray.stagekit import StageMissingError

    found: list[type[BaseException]] = [ConfigError, DataError, StageMissingError, OSError, KeyError, ValueError,
                                        UnicodeError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        found += [BotoCoreError, ClientError]
    except ImportError:  # boto3 is a dependency; guard anyway so the error path itself cannot fail
        pass
    return tuple(found)


def _removed_working_dir() -> str | None:
    """The working directory's path when it no longer exists (removed under the running command), else None."""
    try:
        os.getcwd()
        return None
    except FileNotFoundError:
        try:  # Linux keeps the old path, with " (deleted)" after it
            return os.readlink("/proc/self/cwd").removesuffix(" (deleted)")
        except OSError:
            return os.environ.get("PWD", "(unknown)")


def _message(exc: BaseException, doing: str = "") -> str:
    """One line for a failure. An OS error often names nothing (``[Errno 2] No such file or directory`` from
    ``os.getcwd()``), so it also says what was being done (the stage and run directory the pipeline noted, else
    ``doing``: the command) and on which path, the working directory when that is the one gone."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, OSError):
        return text
    path = getattr(exc, "filename", None)
    if path and str(path) not in text:
        text = f"{path}: {text}"
    if (gone := _removed_working_dir()) is not None:
        text += (f"; the working directory {gone} no longer exists (removed while the command ran): run from a "
                 f"folder that outlives the job")
    stage = [n for n in getattr(exc, "__notes__", []) if n.startswith(console.STAGE_NOTE)]
    where = stage[-1] if stage else doing
    return f"{where}: {text}" if where else text


def main(argv: list[str] | None = None) -> int:
    """Run one command; an expected failure prints one message (exit 2), ``--debug`` shows the traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is _cmd_run:
        console.configure(args.verbose)  # quiet unless --verbose; the run's log file is added once it is known
    else:
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns failures into messages
        if args.debug:
            raise
        expected = isinstance(exc, _expected_errors())
        lines = getattr(exc, "errors", None) if expected else None
        doing = shlex.join(["cemg-ray", *(sys.argv[1:] if argv is None else argv)])
        for line in lines or [f"error: {_message(exc, doing[:300])}"]:
            print(line, file=sys.stderr)
        if not expected:
            print(f"(an unexpected {type(exc).__name__}: run again with --debug for the traceback and report it)",
                  file=sys.stderr)
            return 1
        return 2
    finally:
        console.reset()


if __name__ == "__main__":
    sys.exit(main())
