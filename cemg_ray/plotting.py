"""One place that picks matplotlib's backend: plots are written to files on machines without a display."""

from __future__ import annotations

from types import ModuleType


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use: plotting is optional work
    at the end of a stage, so modules that plot do not pay matplotlib's import when they do not)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
