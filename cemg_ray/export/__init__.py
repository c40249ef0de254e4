"""Bulk export: every user's top-K as Parquet partitions, written atomically, on Ray Data."""
