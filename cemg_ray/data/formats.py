"""The dataset formats, named once: the job schema, the loaders and the CLI's ``--format`` read them from here."""

from __future__ import annotations

from typing import Literal, get_args

DatasetFormat = Literal["synthetic", "sequences", "json", "amazon", "parquet", "movielens"]
FORMATS: tuple[str, ...] = get_args(DatasetFormat)
FILE_FORMATS: tuple[str, ...] = tuple(f for f in FORMATS if f != "synthetic")  # the ones read from a path
