"""Analysis of uploaded calls on a pool of worker threads, with the job state in the store.

ONNX Runtime releases the GIL while the network runs, so threads sharing one loaded
model use the cores without copying the model per process; the event loop only
queues work and never waits for it. Jobs left queued or running when the server
stopped are picked up again on the next start.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from callmood.alerts import RuleSet
from callmood.analysis import MIN_CALL_SECONDS, AnalysisError, AnalysisOptions, analyze_call
from callmood.audio import AudioError, EmptyAudioError, audio_info
from callmood.errors import CallmoodError
from callmood.inference import EmotionModel
from callmood.service.schemas import ModelDescription, UploadOptions
from callmood.service.uploads import ReceivedUpload
from callmood.service.webhooks import WebhookDispatcher
from callmood.store import (
    JobRecord,
    create_job,
    mark_job_done,
    mark_job_failed,
    mark_job_running,
    new_id,
    referenced_audio_paths,
    save_call_result,
    session_scope,
    unfinished_jobs,
)

logger = logging.getLogger(__name__)

CALLS_SUBDIR = "calls"
INCOMING_SUBDIR = "incoming"
#: Recordings of live streams (written by routes/stream.py while the call goes on).
LIVE_SUBDIR = "live"
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class SharedModel:
    """The emotion model, loaded once on first use and shared by all workers.

    Parameters
    ----------
    model_dir
        Model package folder; None loads the bundled default model.
    """

    def __init__(self, model_dir: Path | None = None) -> None:
        self.model_dir = model_dir
        # One thread per call's model: each analysis already decodes and detects voice
        # on a second thread, and intra-op threads beside that only contend (about 2x
        # slower on 2 cores: docs/analysis.md). More workers use more cores.
        self.num_threads = 1
        self._model: EmotionModel | None = None
        self._lock = threading.Lock()

    def get(self) -> EmotionModel:
        """The loaded model (loads it on the first call; raises ModelLoadError if it cannot)."""
        with self._lock:
            if self._model is None:
                self._model = EmotionModel.load(self.model_dir, num_threads=self.num_threads)
            return self._model


def analysis_options(options: UploadOptions) -> AnalysisOptions:
    """The analysis options for an upload's options.

    Raises
    ------
    AnalysisError
        The options contradict each other (e.g. customer and agent on one channel).
    """
    values: dict[str, object] = {"mono": options.mono, "analyze_agent": options.analyze_agent}
    # Channels only when the client named one: otherwise a one-channel file counts as mono.
    if options.channels_given:
        values["channels"] = options.channel_mapping()
    return AnalysisOptions(**values)


def check_upload_audio(upload: ReceivedUpload, options: UploadOptions) -> str:
    """Check that an upload is audio the options fit; return its media type for the player.

    Raises
    ------
    AudioError
        Not audio, empty or corrupt (from :func:`callmood.audio.audio_info`).
    AnalysisError
        The channel options contradict each other or name a channel the file lacks.
    """
    analysis_options(options)
    try:
        info = audio_info(upload.path)
    except AudioError as error:
        # Name the file as the client knows it, not the temporary file on the server.
        raise type(error)(str(error).replace(str(upload.path), upload.filename)) from None
    if info.frames == 0 or info.duration_seconds <= 0:
        raise EmptyAudioError(f"{upload.filename}: the audio has no samples")
    if info.duration_seconds < MIN_CALL_SECONDS:
        raise AnalysisError(
            f"{upload.filename}: only {info.duration_seconds:.2f} s of audio; "
            f"a call needs at least {MIN_CALL_SECONDS:g} s"
        )
    if info.channels > 2 and not (options.mono or options.channels_given):
        raise AnalysisError(
            f"{upload.filename}: has {info.channels} channels; say which is which with "
            "customer_channel and agent_channel (indices from 0), or set mono=true"
        )
    if options.channels_given and not options.mono:
        for speaker, channel in options.channel_mapping().items():
            if channel >= info.channels:
                raise AnalysisError(
                    f"{upload.filename}: has {info.channels} channel(s) "
                    f"(indices 0..{info.channels - 1}); no channel {channel} for the {speaker}"
                )
    media_type = mimetypes.guess_type(upload.filename)[0]
    if media_type is None or not media_type.startswith("audio/"):
        media_type = (
            upload.content_type
            if upload.content_type and upload.content_type.startswith("audio/")
            else "application/octet-stream"
        )
    return media_type


class JobRunner:
    """Queue uploaded calls, analyse them on worker threads, store results, send webhooks.

    Parameters
    ----------
    session_factory
        Where jobs and finished calls are written.
    audio_dir
        Folder for kept recordings (`audio_dir/calls/<job id><suffix>`).
    model
        The shared emotion model.
    rules_provider
        Returns the alert rules in force when a job starts (so rule edits apply to
        the next call without a restart).
    webhooks
        Gets the alerts of every finished call.
    workers
        Number of worker threads.
    on_stored
        Called (on the worker thread) with the call id, name and alert count of every
        call stored, so open dashboard pages can show it (service/events.py).
    """

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        audio_dir: Path,
        model: SharedModel,
        rules_provider: Callable[[], RuleSet],
        webhooks: WebhookDispatcher,
        workers: int = 1,
        on_stored: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.audio_dir = audio_dir
        self.model = model
        self.rules_provider = rules_provider
        self.webhooks = webhooks
        self.workers = workers
        self.on_stored = on_stored
        self._executor: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the worker threads and re-queue jobs a previous run left unfinished."""
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="callmood-job")
        self._remove_stray_files()
        with session_scope(self.session_factory) as session:
            for job in unfinished_jobs(session):
                if job.upload_path and (self.audio_dir / job.upload_path).is_file():
                    job.state = "queued"
                    resume = True
                else:
                    mark_job_failed(session, job.id, "the server stopped and the upload was lost")
                    resume = False
                session.flush()
                if resume:
                    logger.info("resuming job %s", job.id)
                    self._submit(job.id)

    def _remove_stray_files(self) -> None:
        """Delete what a killed server left half-done: uploads cut off mid-request, kept
        recordings whose job row was never committed, and recordings of live streams cut
        off by the kill (their call is stored only when the stream ends).

        Runs before the server accepts connections, so no stream is writing right now.
        """
        for partial in (self.audio_dir / INCOMING_SUBDIR).glob(".upload-*"):
            partial.unlink(missing_ok=True)
        with self.session_factory() as session:
            referenced = referenced_audio_paths(session)
        for subdir in (CALLS_SUBDIR, LIVE_SUBDIR):
            for kept in (self.audio_dir / subdir).glob("*"):
                relative = kept.relative_to(self.audio_dir).as_posix()
                if kept.is_file() and relative not in referenced:
                    logger.warning("removing %s: no call or job refers to it", kept)
                    kept.unlink(missing_ok=True)

    def shutdown(self) -> None:
        """Stop taking work; a running analysis finishes, queued jobs wait for the next start."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def wait(self, job_id: str, timeout_seconds: float | None = None) -> None:
        """Block until the job's analysis has finished (for tests and scripts)."""
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout_seconds)

    # -------------------------------------------------------------- producer side

    def accept_upload(self, upload: ReceivedUpload, options: UploadOptions) -> JobRecord:
        """Check an upload, keep its file, queue its analysis; blocking (run it in a thread).

        Raises
        ------
        AudioError
            The upload is not usable audio; its file is deleted and nothing is queued.
        """
        job_id = new_id()
        suffix = Path(upload.filename).suffix.lower()
        relative = Path(CALLS_SUBDIR) / f"{job_id}{suffix if _SAFE_SUFFIX.match(suffix) else ''}"
        target = self.audio_dir / relative
        try:
            media_type = check_upload_audio(upload, options)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(upload.path, target)
            with session_scope(self.session_factory) as session:
                job = create_job(
                    session,
                    job_id=job_id,
                    name=options.name or upload.filename,
                    tags=options.tags,
                    # The client's file name goes with the options: it is the result's `source`.
                    options={**options.model_dump(mode="json"), "filename": upload.filename},
                    upload_path=relative.as_posix(),
                    audio_media_type=media_type,
                )
        except BaseException:
            # Refused or failed: neither the upload nor its kept copy may stay behind.
            upload.discard()
            target.unlink(missing_ok=True)
            raise
        self._submit(job.id)
        return job

    def _submit(self, job_id: str) -> None:
        if self._executor is None:
            raise RuntimeError("JobRunner.start() was not called")
        future = self._executor.submit(self._run, job_id)
        with self._lock:
            self._futures[job_id] = future
        future.add_done_callback(lambda _: self._forget(job_id))

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._futures.pop(job_id, None)

    # -------------------------------------------------------------- worker side

    def _run(self, job_id: str) -> None:
        with session_scope(self.session_factory) as session:
            job = mark_job_running(session, job_id)
            stored_options = dict(job.options)
            filename = str(stored_options.pop("filename", job.name))
            options = UploadOptions.model_validate(stored_options)
            name, tags = job.name, list(job.tags)
            upload_path, media_type = job.upload_path, job.audio_media_type
        audio_path = self.audio_dir / upload_path if upload_path else None
        try:
            if audio_path is None or not audio_path.is_file():
                raise CallmoodError(f"job {job_id}: the uploaded file is missing")
            result = analyze_call(
                audio_path,
                options=analysis_options(options),
                model=self.model.get(),
                rules=self.rules_provider(),
                call_id=job_id,
            )
            result = result.model_copy(update={"call_id": job_id, "source": filename})
            with session_scope(self.session_factory) as session:
                save_call_result(
                    session,
                    result,
                    name=name,
                    tags=tags,
                    audio_path=upload_path,
                    audio_media_type=media_type,
                    metadata=options.call_metadata(),
                )
                mark_job_done(session, job_id, result.call_id)
        except Exception as error:
            if isinstance(error, CallmoodError):
                # Name the file as the client knows it, not where the server keeps it.
                message = str(error).replace(str(audio_path), filename)
                logger.warning("job %s failed: %s", job_id, message)
            else:
                message = f"internal error while analysing the call ({type(error).__name__})"
                logger.exception("job %s crashed", job_id)
            if audio_path is not None:
                audio_path.unlink(missing_ok=True)
            with session_scope(self.session_factory) as session:
                mark_job_failed(session, job_id, message)
            return
        if self.on_stored is not None:
            try:
                self.on_stored(result.call_id, name, len(result.alerts))
            except Exception:
                logger.exception("job %s: telling the dashboard failed", job_id)
        self.webhooks.dispatch_alerts(result.alerts, call_id=result.call_id, call_name=name)


def describe_model(model: SharedModel) -> ModelDescription:
    """Name, labels, metadata and model card of the shared model (loads it if needed)."""
    loaded = model.get()
    directory = getattr(loaded, "directory", None)
    metadata: dict = {}
    card: str | None = None
    if directory is not None:
        metadata_file = Path(directory) / "model.json"
        card_file = Path(directory) / "MODEL_CARD.md"
        if metadata_file.is_file():
            metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        if card_file.is_file():
            card = card_file.read_text(encoding="utf-8")
    return ModelDescription(
        name=loaded.name,
        labels=list(loaded.labels),
        backend=loaded.backend,
        window_seconds=loaded.window_seconds,
        directory=str(directory) if directory is not None else None,
        metadata=metadata,
        card=card,
    )
