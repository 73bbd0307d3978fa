"""The batch output folder: one Parquet file per call per table, written atomically.

Layout of ``DIR``: ``calls/``, ``segments/``, ``alerts/``, ``errors/`` (each a
Parquet dataset of files named ``<call sha256>.parquet``) and ``batch.json``
(the settings the results were made with). A file is written under a hidden
temporary name and renamed into place (``os.replace``), so a killed batch never
leaves a half-written visible file; a call's ``calls/`` file is written last and
marks it done, so a rerun redoes exactly the calls without one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from callmood.batch.options import BatchError
from callmood.batch.tables import SCHEMAS, TABLES

SETTINGS_FILE = "batch.json"
_LOCK_FILE = ".lock"
_TEMPORARY_SUFFIX = ".tmp"
#: Errors the next run retries (the failure was not the input's fault) end in this.
_RETRY_SUFFIX = ".retry.parquet"


class BatchOutput:
    """The output folder of a batch, held exclusively by one run at a time.

    Parameters
    ----------
    directory
        Created if missing.

    Raises
    ------
    BatchError
        When the folder cannot be created or another batch is writing to it.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            for table in TABLES:
                (self.directory / table).mkdir(parents=True, exist_ok=True)
            self._lock = open(self.directory / _LOCK_FILE, "a")  # noqa: SIM115 (held for the run)
        except OSError as error:
            raise BatchError(f"--out {directory}: cannot use as output folder ({error})") from None
        try:
            # The kernel drops the lock when the process dies, even by SIGKILL.
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            self._lock.close()
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise BatchError(
                    f"--out {directory}: another batch is writing to this folder"
                ) from None
            raise

    def close(self) -> None:
        """Release the folder."""
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> BatchOutput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Record the batch's settings, or refuse to mix results of different settings.

        Raises
        ------
        BatchError
            When the folder holds results made with other settings (model, rules,
            channel mapping, agent opt-in): resuming would mix the two.
        """
        path = self.directory / SETTINGS_FILE
        if path.exists():
            try:
                recorded = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                raise BatchError(f"{path}: unreadable batch settings ({error})") from None
            changed = sorted(
                k for k in settings.keys() | recorded.keys() if settings.get(k) != recorded.get(k)
            )
            if changed and self.done_keys():
                differences = "; ".join(
                    f"{k}: {recorded.get(k)!r} -> {settings.get(k)!r}" for k in changed
                )
                raise BatchError(
                    f"--out {self.directory} holds results made with other settings "
                    f"({differences}); use another output folder"
                )
        _write_atomically(path, json.dumps(settings, indent=2, sort_keys=True).encode())

    def remove_temporaries(self) -> int:
        """Delete temporary files a killed run left behind; return how many."""
        removed = 0
        for table in TABLES:
            for path in (self.directory / table).glob(f".*{_TEMPORARY_SUFFIX}"):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def done_keys(self) -> set[str]:
        """Calls that need no more work: analysed, or failed through their input's fault."""
        done = self.analysed_calls()
        done |= {
            p.name.removesuffix(".parquet")
            for p in self._files("errors")
            if not p.name.endswith(_RETRY_SUFFIX)
        }
        return done

    def clear_retryable_errors(self) -> int:
        """Forget failures that were not the input's fault, so this run retries them."""
        stale = [p for p in self._files("errors") if p.name.endswith(_RETRY_SUFFIX)]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def analysed_calls(self) -> set[str]:
        """Hashes of the calls analysed so far (by any run)."""
        return {p.name.removesuffix(".parquet") for p in self._files("calls")}

    def read_result(self, call_hash: str) -> tuple[str, str]:
        """An analysed call's file path and its whole result as JSON."""
        row = pq.read_table(
            self.directory / "calls" / f"{call_hash}.parquet", columns=["path", "result_json"]
        ).to_pylist()[0]
        return row["path"], row["result_json"]

    def write_result(self, call_hash: str, tables: dict[str, pa.Table]) -> None:
        """Store an analysed call: its segments and alerts first, its calls row last."""
        for table in ("segments", "alerts"):
            if tables[table].num_rows:
                self._write_table(table, f"{call_hash}.parquet", tables[table])
        self._write_table("calls", f"{call_hash}.parquet", tables["calls"])

    def write_error(self, key: str, table: pa.Table, *, retryable: bool) -> None:
        """Store a failed call's errors row (``key``: its content hash, or a path hash)."""
        name = f"{key}{_RETRY_SUFFIX}" if retryable else f"{key}.parquet"
        self._write_table("errors", name, table)

    def _write_table(self, table: str, name: str, data: pa.Table) -> None:
        buffer = pa.BufferOutputStream()
        pq.write_table(data.cast(SCHEMAS[table]), buffer)
        _write_atomically(self.directory / table / name, buffer.getvalue().to_pybytes())

    def _files(self, table: str) -> list[Path]:
        return [
            p
            for p in (self.directory / table).iterdir()
            if p.name.endswith(".parquet") and not p.name.startswith((".", "_"))
        ]


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(
        f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{_TEMPORARY_SUFFIX}"
    )
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            # Without fsync a power cut can leave the renamed file empty on some filesystems.
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@dataclass
class BatchResults:
    """A batch's tables read back from its output folder (one row per call, segment, ...)."""

    calls: pd.DataFrame
    segments: pd.DataFrame
    alerts: pd.DataFrame
    errors: pd.DataFrame


def read_batch_table(directory: str | Path, table: str) -> pa.Table:
    """One table of a batch output folder as an Arrow table (empty if nothing was written).

    Raises
    ------
    BatchError
        When ``table`` is not one of calls, segments, alerts, errors, or the folder is missing.
    """
    if table not in SCHEMAS:
        raise BatchError(f"unknown batch table {table!r} (expected one of {', '.join(TABLES)})")
    folder = Path(directory) / table
    if not folder.is_dir():
        raise BatchError(f"{directory}: not a batch output folder (no {table}/ inside)")
    # Files starting with "." (temporaries) or "_" are ignored by pyarrow's dataset discovery.
    data = ds.dataset(folder, format="parquet", schema=SCHEMAS[table]).to_table()
    if table == "errors" and data.num_rows:
        # A retried call that then succeeded may still have its old error file if the run
        # was killed between the two writes: the success wins.
        done = set(read_batch_table(directory, "calls").column("call_hash").to_pylist())
        keep = [h not in done for h in data.column("call_hash").to_pylist()]
        data = data.filter(pa.array(keep, type=pa.bool_()))
    return data


def read_batch_results(directory: str | Path) -> BatchResults:
    """Read all four tables of a batch output folder as pandas DataFrames.

    Integer and boolean columns keep their type where values are missing (pandas'
    nullable ``Int32`` / ``boolean``): a channel index stays an integer, not 0.0.
    """
    nullable = {pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}
    tables = {
        name: read_batch_table(directory, name).to_pandas(types_mapper=nullable.get)
        for name in TABLES
    }
    return BatchResults(**tables)
