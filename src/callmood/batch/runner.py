"""Run a batch: find the calls, skip the ones already done, analyse the rest on Dask, store them.

Dask does the distribution (a ``LocalCluster`` of worker processes, or an
existing cluster by its scheduler address); this module only decides what to
submit and writes what comes back, one call at a time, as it arrives.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster, as_completed

from callmood.batch.options import PERFORMANCE_FIELDS, BatchError, BatchOptions
from callmood.batch.output import BatchOutput
from callmood.batch.sources import CallFile, file_sha256, find_calls
from callmood.batch.tables import error_table
from callmood.batch.worker import PLUGIN_NAME, AnalyzerPlugin, CallJob, CallOutcome
from callmood.batch.worker import analyze_on_worker as _analyze_on_worker
from callmood.errors import CallmoodError

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
    rules = _load_rules(options.rules)
    settings = _settings_fingerprint(options)
    with BatchOutput(out_dir) as output:
        output.check_settings(settings)
        output.remove_temporaries()
        output.clear_retryable_errors()

        jobs = _name_calls(calls, output, summary, progress, started)
        done = output.done_keys()
        pending = [job for job in jobs if job.call_hash not in done]
        summary.skipped = len(jobs) - len(pending)
        if pending:
            _analyse(pending, output, options, rules, summary, progress, started)
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _name_calls(
    calls: list[CallFile],
    output: BatchOutput,
    summary: BatchSummary,
    progress: ProgressCallback | None,
    started: float,
) -> list[CallJob]:
    """Hash every file; one job per distinct content, unreadable files recorded as errors."""
    paths_by_hash: dict[str, list[str]] = {}
    channels_by_hash: dict[str, dict[str, int] | None] = {}
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
        CallJob(call_hash, tuple(paths), channels_by_hash[call_hash])
        for call_hash, paths in paths_by_hash.items()
    ]


def _analyse(
    jobs: list[CallJob],
    output: BatchOutput,
    options: BatchOptions,
    rules: Any,
    summary: BatchSummary,
    progress: ProgressCallback | None,
    started: float,
) -> None:
    plugin = AnalyzerPlugin(
        torch_threads=1,
        model_dir=str(options.model_dir) if options.model_dir is not None else None,
        options=options.analysis_options(),
        rules=rules,
    )
    instances: set[str] = set()
    with _dask_client(options) as client:
        try:
            client.register_plugin(plugin, name=PLUGIN_NAME)
        except CallmoodError:
            raise
        except Exception as error:  # noqa: BLE001 - a worker's failure to load the model
            raise BatchError(
                f"the workers could not load the model ({type(error).__name__}: {error})"
            ) from None
        futures = client.map(
            _analyze_on_worker, jobs, key=[f"callmood-call-{job.call_hash}" for job in jobs]
        )
        job_by_key = {future.key: job for future, job in zip(futures, jobs, strict=True)}
        total = len(futures)
        finished = 0
        for future in as_completed(futures):
            outcome = _collect(future, job_by_key[future.key])
            future.release()
            if outcome.ok:
                output.write_result(outcome.call_hash, outcome.tables)
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


class _dask_client:  # noqa: N801 - used like a function, as a context manager
    """A Dask client on a fresh local cluster, or on an existing scheduler."""

    def __init__(self, options: BatchOptions) -> None:
        self.options = options
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None

    def __enter__(self) -> Client:
        options = self.options
        if options.scheduler is not None:
            try:
                self.client = Client(options.scheduler, timeout=_SCHEDULER_CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as error:
                raise BatchError(
                    f"--scheduler {options.scheduler}: cannot connect ({error})"
                ) from None
            return self.client
        self.cluster = LocalCluster(
            n_workers=options.workers,
            threads_per_worker=options.threads_per_worker,
            processes=True,
            # Several batches (and people) share a machine: no fixed dashboard port.
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        self.client = Client(self.cluster)
        return self.client

    def __exit__(self, *exc_info: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _load_rules(path: Path | None) -> Any:
    """The alert rules, read and validated here so that a bad file fails before any work."""
    if path is None:
        return None
    from callmood.alerts import RuleSet

    return RuleSet.from_yaml(path)


def _settings_fingerprint(options: BatchOptions) -> dict[str, Any]:
    """What makes results comparable: resuming with other values would mix two analyses."""
    from callmood.results import SCHEMA_VERSION

    analysis = options.analysis_options().model_dump(mode="json", exclude=PERFORMANCE_FIELDS)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": _model_fingerprint(options.model_dir),
        # The default rules are fingerprinted too: an upgrade that changes them is a change.
        "rules": _file_digest(options.rules or _default_rules_path()),
        "analysis": analysis,
    }


def _default_rules_path() -> Path:
    from callmood.alerts import DEFAULT_RULES_PATH

    return DEFAULT_RULES_PATH


def _model_fingerprint(model_dir: Path | None) -> str:
    from callmood.inference import default_model_dir

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
