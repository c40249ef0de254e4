"""``cemg-ray bench`` subcommands: each measures this project's path against a reference in one run."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def emit(result: dict[str, Any], as_json: bool, print_table: Callable[[dict[str, Any]], None]) -> None:
    """Print a benchmark's result as JSON (``--json``, for scripts) or as its human-readable table."""
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
