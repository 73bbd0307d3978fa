"""Batch analysis of call archives on Dask, resumable, into Parquet tables (calls, segments,
alerts, errors) with one file per call named by the sha256 of the call's bytes.

>>> summary = run_batch("archive/", "results/", BatchOptions(workers=2))  # doctest: +SKIP
>>> read_batch_results("results/").calls  # doctest: +SKIP
"""

from callmood.batch.options import BatchError, BatchOptions
from callmood.batch.output import BatchResults, read_batch_results, read_batch_table
from callmood.batch.runner import BatchProgress, BatchSummary, run_batch
from callmood.batch.sources import CallFile, find_calls
from callmood.batch.tables import SCHEMAS, TABLES

__all__ = [
    "SCHEMAS",
    "TABLES",
    "BatchError",
    "BatchOptions",
    "BatchProgress",
    "BatchResults",
    "BatchSummary",
    "CallFile",
    "find_calls",
    "read_batch_results",
    "read_batch_table",
    "run_batch",
]
