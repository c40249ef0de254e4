"""What a job prints: one line per stage and the figures at the end; everything else goes to the run's log file.

Ray and the libraries under it log at INFO (Ray Data's progress tables, Ray Train's checkpoint reports, the
workers' own output forwarded to the driver); a newcomer reading that has to dig for whether the job worked.
By default the console gets this package's progress lines and every warning or error, and the run's log file
(``<run_dir>/_logs/<time>.log``, ``./logs/`` for an ``s3://`` run directory) gets all of it, the workers' output
included. ``--verbose`` shows everything on the console, as before.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from cemg_ray import artifacts

PROGRESS = "cemg_ray.progress"  # the logger whose INFO lines the console keeps
# how the pipeline's note on a stage's OS error starts (a PEP 678 note: the CLI's message and --debug show it)
STAGE_NOTE = "stage "
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_state: dict[str, Any] = {"quiet": False, "file": None, "native": None, "ray_handlers": None}
# a line of Ray's C++ core (``[2026-12-07 01:51:21,965 E 20468 20468] core_worker.cc:2465: ...``)
NATIVE_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,.]+ [DIWEF] \d+ \d+\] \S+\.(cc|h):\d+")


class _ConsoleFilter(logging.Filter):
    """Progress lines and warnings; Ray's and the libraries' INFO lines stay in the log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "py.warnings":
            return False  # library deprecation chatter: in the log file
        if record.name == "ray" or record.name.startswith("ray."):
            return record.levelno >= logging.ERROR  # Ray's notices (token auth on, progress bars off): the file
        return record.levelno >= logging.WARNING or record.name == PROGRESS


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged, not to what it was when the console was set
    up (a test harness or a notebook may swap it)."""

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def log_path(run_dir: str, job: str) -> Path:
    """Where this invocation's log goes: inside a local run directory, else ``./logs``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = Path("logs") if "://" in run_dir else Path(run_dir) / artifacts.RUN_LOGS
    return folder / f"{job}-{stamp}.log"


def configure(verbose: bool, log_file: Path | None = None) -> None:
    """Console and file handlers on the root logger. Quiet unless ``verbose``; Ray is set up to match when it
    starts (:func:`route_worker_output`, :func:`quiet_ray_libraries`)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = _CurrentStderr()
    console.setFormatter(logging.Formatter(FORMAT if verbose else "%(message)s", datefmt="%H:%M:%S"))
    if not verbose:
        console.addFilter(_ConsoleFilter())
    root.addHandler(console)
    _state.update(quiet=not verbose, file=None)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
        _state["file"] = handler.stream
    logging.captureWarnings(True)
    quiet_ray_libraries()


def capture_native_stderr() -> None:
    """Quiet mode: lines that Ray's C++ core writes to this process's stderr go to the log file.

    Ray Data puts each actor pool's map function in the object store (``ray.put``) and restarts dead actors,
    and Ray's core logs that combination at error level for every pool it starts (ray-project/ray#53727):
    nothing the job can change without giving up actor restarts. Such lines bypass Python's logging, so the
    stderr file descriptor itself goes through a pipe: lines of the C++ core to the log file, the rest to the
    console unchanged.
    """
    if not _state["quiet"] or _state["file"] is None or _state["native"] is not None:
        return
    read_fd, write_fd = os.pipe()
    console_fd = os.dup(2)
    sys.stderr.flush()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    console, logfile = os.fdopen(console_fd, "w", buffering=1), _state["file"]

    def pump() -> None:
        with os.fdopen(read_fd, "r", errors="replace") as lines:
            for line in lines:
                (logfile if NATIVE_LINE.match(line) else console).write(line)
                logfile.flush()

    thread = threading.Thread(target=pump, name="cemg-ray-stderr", daemon=True)
    thread.start()
    _state["native"] = (thread, console_fd, console)


def release_native_stderr() -> None:
    """Give stderr its console back and let the pump write what it still holds (before the process ends)."""
    if _state["native"] is None:
        return
    thread, console_fd, console = _state["native"]
    sys.stderr.flush()
    os.dup2(console_fd, 2)
    # Ray's own processes, started after the pipe, hold its write end until Ray shuts down at exit, so the pump
    # may not see the end of it now: it gets a moment to write what it holds, then stays a daemon
    thread.join(timeout=0.5)
    console.flush()
    _state["native"] = None


def quiet_ray_libraries() -> None:
    """Quiet mode: Ray's loggers hand their INFO lines to the root's handlers (the file) instead of printing them,
    and Ray Data draws no progress bars. Called when the console is set up and again around ``ray.init`` (Ray
    sets its loggers up when it is imported)."""
    if not _state["quiet"]:
        return
    for name in ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve"):
        lg = logging.getLogger(name)
        for handler in list(lg.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                lg.removeHandler(handler)
        lg.propagate = True
    if "ray.data" in sys.modules:
        from ray.data import DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False


def route_worker_output() -> None:
    """After ``ray.init``: the workers' forwarded stdout/stderr go to the log file, not the console (quiet mode).

    Ray prints them through one dispatcher handler (``ray_print_logs``); this swaps that handler for one that
    writes to the log file, so nothing is lost and a worker's traceback is still there to read.
    """
    if not _state["quiet"]:
        return
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher
    except ImportError:  # another Ray layout: keep Ray's own printing
        return
    stream: TextIO | None = _state["file"]
    if _state.get("ray_handlers") is None:
        _state["ray_handlers"] = list(global_worker_stdstream_dispatcher.handlers)
    global_worker_stdstream_dispatcher.remove_handler("ray_print_logs")
    if stream is not None:
        global_worker_stdstream_dispatcher.add_handler("ray_print_logs", lambda data: _write_worker_lines(data,
                                                                                                          stream))


def reset() -> None:
    """Undo :func:`configure` (the end of a command run in-process, as the tests do): stderr, the workers'
    output and the root logger as they were, the log file closed."""
    release_native_stderr()
    if _state.get("ray_handlers") is not None:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher

        global_worker_stdstream_dispatcher.handlers = _state["ray_handlers"]
        _state["ray_handlers"] = None
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    _state.update(quiet=False, file=None)


def _write_worker_lines(data: dict, stream: TextIO) -> None:
    who = data.get("actor_name") or data.get("task_name") or f"pid={data.get('pid')}"
    for line in data.get("lines", []):
        stream.write(f"({who}) {line}\n")
    stream.flush()


def progress(message: str, *args: Any) -> None:
    """One console line (and a log-file line) about the job's progress."""
    logging.getLogger(PROGRESS).info(message, *args)


def figures_table(metrics: dict, k: int = 10) -> list[str]:
    """The test figures of every evaluated model, mean ± standard error, as printable lines."""

    def cell(row: dict, part: str, key: str) -> str:
        value, se = row.get(part, {}).get(key), row.get(f"{part}_se", {}).get(key)
        return "-" if value is None else f"{value:.4f} ± {se or 0.0:.4f}"

    lines = [f"{'model':<24} {'HR@' + str(k):>17} {'NDCG@' + str(k):>17} {'cold-start HR@' + str(k):>17}"]
    for name, row in metrics.items():
        lines.append(f"{name:<24} {cell(row, 'overall', f'HR@{k}'):>17} {cell(row, 'overall', f'NDCG@{k}'):>17} "
                     f"{cell(row, 'cold_start', f'HR@{k}'):>17}")
    return lines
