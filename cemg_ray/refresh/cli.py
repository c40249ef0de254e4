"""``cemg-ray refresh JOB INCREMENT``: one refresh of the served model with an increment's data."""

from __future__ import annotations

import argparse
import json

EXIT_KEPT = 3  # the refresh ran and kept the previous version (a script can tell it from a failure, exit 2)


def _cmd_refresh(args: argparse.Namespace) -> int:
    from cemg_ray.config import load_config
    from cemg_ray.refresh.refresh import REPORT, run_refresh

    overrides = list(args.set) + ([f"run_dir={args.run_dir}"] if args.run_dir else [])
    cfg = load_config(args.job, overrides)
    report = run_refresh(cfg, args.increment)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        hold = report.get("holdout") or {}
        print(f"refresh {report['version']}: {report['decision']['reason']}")
        if hold:
            for name in ("previous", "refreshed"):
                row = hold[name]
                print(f"  {name:<9} {cfg.refresh.metric} {row[cfg.refresh.metric]:.4f} "
                      f"(se {row['se'][cfg.refresh.metric]:.4f}), lists with new items "
                      f"{row['lists_with_new_items']:.1%}, {row['model_version']}")
        print(f"  serving reads: {report['serving_run_dir']}")
        print(f"  report: {report['run_dir']}/{REPORT}; {report['timing_s']['total']:.1f}s")
    return 0 if report["decision"]["promote"] else EXIT_KEPT


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("refresh", help="append new data, fine-tune from the served model, promote it if not worse")
    p.add_argument("job", help="the refresh job (jobs/refresh.yaml): run_dir is the run the first refresh starts from")
    p.add_argument("increment", help="a folder with interactions.parquet|jsonl and/or items.parquet|jsonl")
    p.add_argument("--run-dir", help="override run_dir (the base run)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a key")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=_cmd_refresh)
