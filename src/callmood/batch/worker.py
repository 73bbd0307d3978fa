"""What runs on a Dask worker: the model loaded once per worker, and the analysis of one call.

The model, rules and analysis settings travel to each worker once, in a
``WorkerPlugin``; a task carries only its call (a path, its hash, its channels).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from distributed import WorkerPlugin, get_worker

from callmood.alerts import RuleSet
from callmood.analysis import AnalysisOptions, analyze_call
from callmood.batch.options import with_channels
from callmood.batch.sources import file_sha256
from callmood.batch.tables import error_table, result_tables
from callmood.call_metadata import CallMetadata
from callmood.errors import CallmoodError
from callmood.inference import EmotionModel

PLUGIN_NAME = "callmood-batch-analysis"


@dataclass(frozen=True)
class CallJob:
    """One call to analyse: its content hash, its files (analysed first), channels and
    metadata (agent, queue, ... from the sidecar)."""

    call_hash: str
    paths: tuple[str, ...]
    channels: dict[str, int] | None = None
    metadata: CallMetadata | None = None


@dataclass
class CallOutcome:
    """What a worker sends back for one call: its table rows, or its error row."""

    call_hash: str
    paths: tuple[str, ...]
    tables: dict[str, pa.Table] = field(default_factory=dict)
    duration_seconds: float = 0.0
    error: str | None = None
    retryable: bool = False
    #: Which loaded model analysed the call (one per worker process).
    model_instance: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


class CallAnalyzer:
    """A loaded model plus the analysis settings: analyses calls one after another.

    Parameters
    ----------
    model_dir
        Model package folder; None for the bundled model.
    options
        Analysis settings every call starts from; a job's own channel mapping wins.
    rules
        Alert rules; None for the defaults.
    num_threads
        Threads for model inference (None = ONNX Runtime's default, all cores).
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        options: AnalysisOptions | None = None,
        rules: RuleSet | None = None,
        num_threads: int | None = None,
    ) -> None:
        self.options = options or AnalysisOptions()
        self.model = EmotionModel.load(
            Path(model_dir) if model_dir is not None else None,
            backend=self.options.backend,
            num_threads=num_threads,
        )
        self.rules = rules
        self.instance = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def analyze(self, job: CallJob) -> CallOutcome:
        """Analyse one call; a failure becomes the outcome's error, never an exception."""
        path = Path(job.paths[0])
        outcome = CallOutcome(job.call_hash, job.paths, model_instance=self.instance)
        try:
            # The hash named the call when the batch started; a file changed since then
            # must not be stored under the old content's name.
            if file_sha256(path) != job.call_hash:
                raise _FileChangedError(f"{path}: file changed since the batch started")
            options = with_channels(self.options, job.channels)
            result = analyze_call(path, options, self.model, self.rules, call_id=job.call_hash)
            if job.metadata is not None:
                result = result.model_copy(update={"metadata": job.metadata})
            outcome.tables = result_tables(job.call_hash, job.paths, result)
            outcome.duration_seconds = result.duration_seconds
        except _FileChangedError as error:
            self._fail(outcome, error, retryable=True)
        except CallmoodError as error:
            self._fail(outcome, error, retryable=False)
        except OSError as error:
            # Unreadable now (permissions, a network share away) may be readable next run.
            self._fail(outcome, error, retryable=True, prefix=f"{path}: cannot read: ")
        except Exception as error:  # noqa: BLE001 - one call's bug must not stop the batch
            self._fail(outcome, error, retryable=True, prefix=f"{path}: internal error: ")
        return outcome

    @staticmethod
    def _fail(
        outcome: CallOutcome, error: BaseException, *, retryable: bool, prefix: str = ""
    ) -> None:
        outcome.error = f"{prefix}{error}" if prefix else str(error)
        outcome.retryable = retryable
        outcome.tables = {
            "errors": error_table(
                outcome.call_hash,
                outcome.paths,
                type(error).__name__,
                outcome.error,
                retryable=retryable,
            )
        }


class _FileChangedError(Exception):
    pass


class AnalyzerPlugin(WorkerPlugin):
    """Loads the model once when a worker starts (and on workers that join later).

    Parameters
    ----------
    inference_threads
        Threads of each call's model inference (torch and ONNX Runtime) on a worker.
    **analyzer_arguments
        Passed to :class:`CallAnalyzer`.
    """

    def __init__(self, *, inference_threads: int = 1, **analyzer_arguments: Any) -> None:
        self.inference_threads = inference_threads
        self.analyzer_arguments = analyzer_arguments
        self.analyzer: CallAnalyzer | None = None

    def setup(self, worker: Any) -> None:
        torch.set_num_threads(self.inference_threads)
        self.analyzer = CallAnalyzer(num_threads=self.inference_threads, **self.analyzer_arguments)

    def teardown(self, worker: Any) -> None:
        self.analyzer = None


def analyze_on_worker(job: CallJob, plugin_name: str = PLUGIN_NAME) -> CallOutcome:
    """The Dask task: analyse ``job`` with the model this worker loaded for the batch."""
    plugin = get_worker().plugins[plugin_name]
    if plugin.analyzer is None:
        raise RuntimeError(f"the batch plugin {plugin_name} is not set up on this worker")
    return plugin.analyzer.analyze(job)
