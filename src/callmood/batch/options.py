"""The settings of one batch run and the error a batch raises for bad arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callmood.analysis import AnalysisOptions
from callmood.errors import CallmoodError

#: AnalysisOptions fields that change speed, not results: a rerun may change them.
PERFORMANCE_FIELDS = frozenset({"backend", "batch_size", "num_threads", "block_seconds"})


class BatchError(CallmoodError):
    """A batch cannot start: bad source, output folder or option."""


@dataclass(frozen=True)
class BatchOptions:
    """How to run a batch: where, on how many workers, and how to analyse each call.

    Parameters
    ----------
    workers
        Worker processes of the local Dask cluster (ignored with ``scheduler``).
    threads_per_worker
        Calls one worker analyses at the same time; each call's inference runs on
        one thread, so 1 keeps a worker to one CPU core.
    scheduler
        Address of an existing Dask scheduler (``tcp://host:8786``); None starts
        a local cluster on this machine.
    channels
        Speaker -> channel index (``{"customer": 0, "agent": 1}``) for every call;
        None keeps the analysis default (left = customer, right = agent, and a
        one-channel file analysed as mono). A manifest row may override it per call.
    analyze_agent
        Also infer the agent's emotions (an explicit opt-in; see the privacy note).
    rules
        YAML file of alert rules; None uses the default rules.
    model_dir
        Model package directory; None uses the bundled default model. It must be
        readable at the same path on every worker.
    database_url
        Also store every analysed call in the service database at this SQLAlchemy
        URL (``sqlite:///callmood.db``, ``postgresql+psycopg://...``); None: Parquet only.
    metadata
        Sidecar CSV of each file's agent, queue, external call id and start time
        (:func:`~callmood.batch.sources.read_metadata_sidecar`); None: no metadata.
    analysis_overrides
        Further :class:`~callmood.analysis.AnalysisOptions` fields (from Python only),
        e.g. ``{"hop_seconds": 0.5}``.

    Raises
    ------
    BatchError
        When a value is impossible (no workers, a malformed scheduler address).
    AnalysisError
        When the channel mapping or an analysis override is invalid.
    """

    workers: int = 2
    threads_per_worker: int = 1
    scheduler: str | None = None
    channels: dict[str, int] | None = None
    analyze_agent: bool = False
    rules: Path | None = None
    model_dir: Path | None = None
    database_url: str | None = None
    metadata: Path | None = None
    analysis_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise BatchError(f"--workers must be at least 1, got {self.workers}")
        if self.threads_per_worker < 1:
            raise BatchError(
                f"--threads-per-worker must be at least 1, got {self.threads_per_worker}"
            )
        if self.scheduler is not None and "://" not in self.scheduler:
            raise BatchError(
                f"--scheduler {self.scheduler!r} is not a scheduler address "
                "(expected e.g. tcp://host:8786)"
            )
        self.analysis_options()  # fail now, not on every call on the workers

    def analysis_options(self) -> AnalysisOptions:
        """The analysis settings every call starts from (a manifest may change channels)."""
        values: dict[str, Any] = {"analyze_agent": self.analyze_agent, **self.analysis_overrides}
        if self.channels is not None:
            values["channels"] = self.channels
        return AnalysisOptions(**values)


def with_channels(options: AnalysisOptions, channels: dict[str, int] | None) -> AnalysisOptions:
    """``options`` with a call's own channel mapping (None: unchanged).

    Rebuilt rather than copied so that the mapping is validated and counts as
    given explicitly (a one-channel file is then an error, not a mono call).
    """
    if channels is None:
        return options
    return AnalysisOptions(**{**options.model_dump(exclude_unset=True), "channels": channels})
