"""``cemg-ray export``: the bulk export outside a pipeline run (e.g. a nightly job)."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_export(args: argparse.Namespace) -> int:
    from cemg_ray.config import ConfigError, load_config
    from cemg_ray.export.stage import check_inputs, run_export
    from cemg_ray.store import Store

    overrides = list(args.set)
    for key, value in (("run_dir", args.run_dir), ("export.output", args.output), ("export.date", args.date),
                       ("export.model", args.model), ("export.k", args.k), ("ray.address", args.address)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.force:
        overrides.append("export.force=true")
    try:
        cfg = load_config(args.job, overrides)
    except ConfigError as exc:  # every error with the file and the key path
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 2
    store = Store.for_job(cfg)
    try:
        check_inputs(cfg, store)
    except (KeyError, RuntimeError) as exc:  # unknown model, or a stage to run first
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    manifest = run_export(cfg, store)
    print(json.dumps({k: v for k, v in manifest.items() if k != "files"}, indent=2))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write every user's top-K to <output>/dt=YYYY-MM-DD/ (atomic, idempotent)")
    p.add_argument("job", help="job YAML of the trained run")
    p.add_argument("--output", help="s3://bucket/prefix or a local folder (default: <run_dir>/export)")
    p.add_argument("--date", help="partition date YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--model", help="model to export (default: the run's list chosen on validation, else cemg)")
    p.add_argument("-k", type=int, help="items per user")
    p.add_argument("--run-dir", help="override run_dir")
    p.add_argument("--address", help="Ray cluster address")
    p.add_argument("--force", action="store_true", help="re-export even if committed for this model version")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    p.set_defaults(func=_cmd_export)
