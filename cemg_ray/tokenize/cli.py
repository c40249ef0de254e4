"""``cemg-ray codes assign``: semantic IDs for new items without retraining."""

from __future__ import annotations

import argparse
import json

from cemg_ray import artifacts


def _cmd_assign(args: argparse.Namespace) -> int:
    from cemg_ray.config import load_config
    from cemg_ray.stagekit import require
    from cemg_ray.store import Store
    from cemg_ray.tokenize.assign import assign_codes, read_new_items

    overrides = list(args.set) + ([f"run_dir={args.run_dir}"] if args.run_dir else [])
    cfg = load_config(args.job, overrides)
    store = Store.for_job(cfg)
    require(store, cfg, "tokenize")
    report = assign_codes(cfg, store, read_new_items(args.items))
    print(json.dumps(report, indent=2))
    return 0 if not report["unplaceable"] else 2


def _cmd_fusion(args: argparse.Namespace) -> int:
    from cemg_ray.config import load_config
    from cemg_ray.stagekit import require
    from cemg_ray.store import Store
    from cemg_ray.tokenize.fusion_report import analyse_run

    overrides = list(args.set) + ([f"run_dir={args.run_dir}"] if args.run_dir else [])
    cfg = load_config(args.job, overrides)
    store = Store.for_job(cfg)
    require(store, cfg, "tokenize")
    print(json.dumps(analyse_run(cfg, store), indent=2))
    print(f"table: {store.uri(artifacts.FUSION_WEIGHTS)}\nplot:  {store.uri(artifacts.FUSION_FIGURE)}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("codes", help="semantic-ID tables")
    csub = p.add_subparsers(dest="codes_command", required=True, metavar="SUBCOMMAND")
    a = csub.add_parser("assign", help="give codes to new items with the trained encoders, PCA, fusion, RQ-VAE")
    a.add_argument("job", help="the job YAML the run directory was trained with")
    a.add_argument("items", help="Parquet or JSON lines: item_id, title, description/text, image/image_uri")
    a.add_argument("--run-dir", help="override run_dir")
    a.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    a.set_defaults(func=_cmd_assign)
    f = csub.add_parser("fusion", help="per-item fusion weights by popularity and genre: table, plot, summary")
    f.add_argument("job", help="the job YAML the run directory was trained with")
    f.add_argument("--run-dir", help="override run_dir")
    f.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    f.set_defaults(func=_cmd_fusion)
