"""``cemg-ray ui RUN_DIR``: the recommendations page of one run, served locally with uvicorn."""

from __future__ import annotations

import argparse
import sys


def _cmd_ui(args: argparse.Namespace) -> int:
    import uvicorn

    from cemg_ray.ui.app import create_app
    from cemg_ray.ui.data import RunError, RunView

    try:
        view = RunView(args.run_dir, args.model, args.endpoint_url, args.region)
    except RunError as exc:  # not a run, or the model's stage has not run: the message names it
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"{view.run_uri}: model {view.model} ({view.model_version}), {len(view.user_ids)} users, "
          f"{len(view.item_ids)} items\nopen http://{host}:{args.port}/", flush=True)
    uvicorn.run(create_app(view), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="a page to look at a run's recommendations and report (local web server)")
    p.add_argument("run_dir", help="a trained run directory (local path or s3://bucket/prefix)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; the page has no login)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", help="a registered model to show (default: the run's default list)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint for an s3:// run directory")
    p.add_argument("--region", help="S3 region for an s3:// run directory")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default warning)")
    p.set_defaults(func=_cmd_ui)
