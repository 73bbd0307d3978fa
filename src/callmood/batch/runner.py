"""Run a batch: find the calls, skip the ones already done, analyse the rest on Dask, store them.

Dask does the distribution (a ``LocalCluster`` of worker processes, or an
existing cluster by its scheduler address); this module only decides what to
submit and writes what comes back, one call at a time, as it arrives.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster, as_completed

from callmood.alerts import DEFAULT_RULES_PATH, RuleSet
from callmood.batch.database import DatabaseSink
from callmood.batch.options import PERFORMANCE_FIELDS, BatchError, BatchOptions
from callmood.batch.output import BatchOutput
from callmood.batch.sources import CallFile, file_sha256, find_calls, read_metadata_sidecar
from callmood.batch.tables import error_table
from callmood.batch.worker import (
    PLUGIN_NAME,
    AnalyzerPlugin,
    CallJob,
    CallOutcome,
    analyze_on_worker,
)
from callmood.call_metadata import CallMetadata
from callmood.errors import CallmoodError
from callmood.inference import default_model_dir
from callmood.results import SCHEMA_VERSION, CallResult

_SCHEDULER_CONNECT_TIMEOUT = "20s"


@dataclass(frozen=True)
class BatchProgress:
    """Where a running batch stands; passed to the ``progress`` callback after each step.

    ``stage`` is ``"hashing"`` (reading the files to name them by content) or
    ``"analysing"``; ``done``/``total`` count files or calls of that stage.
    """

    stage: str
    done: int
    total: int
    ok: int = 0
    errors: int = 0
    audio_seconds: float = 0.0
    elapsed_seconds: float = 0.0


@dataclass
class BatchSummary:
    """The outcome of one batch run (this run only; earlier runs' calls count as skipped)."""

    output: Path
    files: int = 0
    calls: int = 0
    duplicate_files: int = 0
    skipped: int = 0
    analysed: int = 0
    errors: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    #: Distinct model loads that served this run's calls (one per worker process).
    model_instances: int = 0
    #: Calls added to the service database by this run (with ``database_url``).
    stored: int = 0
    error_messages: list[str] = field(default_factory=list)

    @property
    def audio_hours(self) -> float:
        return self.audio_seconds / 3600.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio analysed per second of wall time (audio hours per hour)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


ProgressCallback = Callable[[BatchProgress], None]


def run_batch(
    source: str | Path,
    out_dir: str | Path,
    options: BatchOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> BatchSummary:
    """Analyse every call of ``source`` on Dask into Parquet tables in ``out_dir``; resumable.

    Calls already in ``out_dir`` (by content hash) are skipped, files with the same
    content are analysed once, and a call that fails is recorded in the errors
    table instead of stopping the batch.

    Parameters
    ----------
    source
        A folder, a glob, a manifest CSV or one audio file (see :func:`find_calls`).
    out_dir
        Output folder (created if missing); see :mod:`callmood.batch.output`.
    options
        Workers, scheduler and analysis settings.
    progress
        Called with a :class:`BatchProgress` after each file hashed and call finished.

    Raises
    ------
    BatchError
        When the source, output folder, model, rules or scheduler cannot be used.
    """
    options = options or BatchOptions()
    started = time.perf_counter()
    summary = BatchSummary(output=Path(out_dir))
    # Everything that can be wrong with the arguments is found before the output is touched.
    calls = find_calls(source, exclude=Path(out_dir))
    summary.files = len(calls)
    metadata = read_metadata_sidecar(options.metadata) if options.metadata is not None else {}
    rules = _load_rules(options.rules)
    settings = _settings_fingerprint(options)
    database = DatabaseSink(options.database_url) if options.database_url else None
    try:
        with BatchOutput(out_dir) as output:
            output.check_settings(settings)
            output.remove_temporaries()
            output.clear_retryable_errors()

            jobs = _name_calls(calls, output, summary, progress, started, metadata)
            done = output.done_keys()
            pending = [job for job in jobs if job.call_hash not in done]
            summary.skipped = len(jobs) - len(pending)
            if pending:
                _analyse(pending, output, database, options, rules, summary, progress, started)
            if database is not None:
                summary.stored += _store_missing(output, database)
    finally:
        if database is not None:
            database.close()
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _name_calls(
    calls: list[CallFile],
    output: BatchOutput,
    summary: BatchSummary,
    progress: ProgressCallback | None,
    started: float,
    metadata: dict[Path, CallMetadata],
) -> list[CallJob]:
    """Hash every file; one job per distinct content, unreadable files recorded as errors.

    A call's metadata is that of its first file the sidecar names.
    """
    paths_by_hash: dict[str, list[str]] = {}
    channels_by_hash: dict[str, dict[str, int] | None] = {}
    metadata_by_hash: dict[str, CallMetadata] = {}
    for number, call in enumerate(calls, start=1):
        try:
            call_hash = file_sha256(call.path)
        except OSError as error:
            # No content to name it by: keyed by its path, and retried on the next run.
            key = "unreadable-" + hashlib.sha256(str(call.path).encode()).hexdigest()
            message = f"{call.path}: cannot read: {error.strerror or error}"
            output.write_error(
                key,
                error_table(key, [str(call.path)], type(error).__name__, message, retryable=True),
                retryable=True,
            )
            summary.errors += 1
            summary.error_messages.append(message)
        else:
            paths_by_hash.setdefault(call_hash, []).append(str(call.path))
            channels_by_hash.setdefault(call_hash, call.channels)
            known = metadata.get(call.path.resolve()) if metadata else None
            if known is not None:
                metadata_by_hash.setdefault(call_hash, known)
        if progress is not None:
            progress(
                BatchProgress(
                    "hashing",
                    number,
                    len(calls),
                    errors=summary.errors,
                    elapsed_seconds=time.perf_counter() - started,
                )
            )
    summary.calls = len(paths_by_hash)
    summary.duplicate_files = sum(len(paths) - 1 for paths in paths_by_hash.values())
    return [
        CallJob(
            call_hash, tuple(paths), channels_by_hash[call_hash], metadata_by_hash.get(call_hash)
        )
        for call_hash, paths in paths_by_hash.items()
    ]


def _analyse(
    jobs: list[CallJob],
    output: BatchOutput,
    database: DatabaseSink | None,
    options: BatchOptions,
    rules: RuleSet | None,
    summary: BatchSummary,
    progress: ProgressCallback | None,
    started: float,
) -> None:
    plugin = AnalyzerPlugin(
        inference_threads=1,
        model_dir=str(options.model_dir) if options.model_dir is not None else None,
        options=options.analysis_options(),
        rules=rules,
    )
    # A name of its own: other batches may share a long-lived cluster with another model.
    plugin_name = f"{PLUGIN_NAME}-{uuid.uuid4().hex[:12]}"
    instances: set[str] = set()
    with _dask_client(options) as client, _analyzer_on_workers(client, plugin, plugin_name):
        futures = client.map(
            analyze_on_worker,
            jobs,
            plugin_name=plugin_name,
            key=[f"callmood-call-{job.call_hash}-{plugin_name}" for job in jobs],
        )
        job_by_key = {future.key: job for future, job in zip(futures, jobs, strict=True)}
        total = len(futures)
        finished = 0
        for future in as_completed(futures):
            outcome = _collect(future, job_by_key[future.key])
            future.release()
            if outcome.ok:
                output.write_result(outcome.call_hash, outcome.tables)
                if database is not None:
                    result_json = outcome.tables["calls"].column("result_json")[0].as_py()
                    result = CallResult.model_validate_json(result_json)
                    summary.stored += database.save(result, outcome.paths[0])
                summary.analysed += 1
                summary.audio_seconds += outcome.duration_seconds
            else:
                output.write_error(
                    outcome.call_hash, outcome.tables["errors"], retryable=outcome.retryable
                )
                summary.errors += 1
                summary.error_messages.append(outcome.error or "")
            if outcome.model_instance:
                instances.add(outcome.model_instance)
            finished += 1
            if progress is not None:
                progress(
                    BatchProgress(
                        "analysing",
                        finished,
                        total,
                        ok=summary.analysed,
                        errors=summary.errors,
                        audio_seconds=summary.audio_seconds,
                        elapsed_seconds=time.perf_counter() - started,
                    )
                )
    summary.model_instances = len(instances)


def _store_missing(output: BatchOutput, database: DatabaseSink) -> int:
    """Store the analysed calls the database lacks; return how many.

    Those are calls of a run killed between its Parquet and database writes, or of
    earlier runs without a database.
    """
    analysed = output.analysed_calls()
    stored = 0
    for call_hash in sorted(analysed - database.stored_ids(analysed)):
        path, result_json = output.read_result(call_hash)
        stored += database.save(CallResult.model_validate_json(result_json), path)
    return stored


def _collect(future: Any, job: CallJob) -> CallOutcome:
    """A finished task's outcome; a task that died with its worker becomes a retryable error."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - e.g. KilledWorker after repeated crashes
        message = (
            f"{job.paths[0]}: the analysis did not finish ({type(error).__name__}: {error}); "
            "a worker may have run out of memory; it is retried on the next run"
        )
        outcome = CallOutcome(job.call_hash, job.paths, error=message, retryable=True)
        outcome.tables = {
            "errors": error_table(
                job.call_hash, job.paths, type(error).__name__, message, retryable=True
            )
        }
        return outcome


@contextlib.contextmanager
def _dask_client(options: BatchOptions) -> Iterator[Client]:
    """A Dask client on a fresh local cluster, or on an existing scheduler."""
    if options.scheduler is not None:
        try:
            client = Client(options.scheduler, timeout=_SCHEDULER_CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as error:
            raise BatchError(f"--scheduler {options.scheduler}: cannot connect ({error})") from None
        with client:
            yield client
        return
    cluster = LocalCluster(
        n_workers=options.workers,
        threads_per_worker=options.threads_per_worker,
        processes=True,
        # Several batches (and people) share a machine: no fixed dashboard port.
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    with cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _analyzer_on_workers(client: Client, plugin: AnalyzerPlugin, name: str) -> Iterator[None]:
    """Load the model on every worker (now, and on workers that join later); unload after."""
    try:
        client.register_plugin(plugin, name=name)
    except CallmoodError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever stopped a worker loading the model
        raise BatchError(
            f"the workers could not load the model ({type(error).__name__}: {error})"
        ) from None
    try:
        yield
    finally:
        # A long-lived cluster should not keep a model per worker after the batch.
        with contextlib.suppress(Exception):
            client.unregister_worker_plugin(name)


def _load_rules(path: Path | None) -> RuleSet | None:
    """The alert rules, read and validated here so that a bad file fails before any work."""
    if path is None:
        return None
    return RuleSet.from_yaml(path)


def _settings_fingerprint(options: BatchOptions) -> dict[str, Any]:
    """What makes results comparable: resuming with other values would mix two analyses."""
    analysis = options.analysis_options().model_dump(mode="json", exclude=PERFORMANCE_FIELDS)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": _model_fingerprint(options.model_dir),
        # The default rules are fingerprinted too: an upgrade that changes them is a change.
        "rules": _file_digest(options.rules or DEFAULT_RULES_PATH),
        "analysis": analysis,
    }


def _model_fingerprint(model_dir: Path | None) -> str:
    directory = Path(model_dir) if model_dir is not None else default_model_dir()
    metadata = directory / "model.json"
    if not metadata.is_file():
        raise BatchError(f"--model {directory}: not a model package (no model.json)")
    return _file_digest(metadata)


def _file_digest(path: Path) -> str:
    try:
        return "sha256:" + file_sha256(Path(path))
    except OSError as error:
        raise BatchError(f"{path}: cannot read ({error.strerror or error})") from None
