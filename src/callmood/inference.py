"""Load a saved emotion model and predict class probabilities for batches of audio windows.

Features are computed in torch (:class:`callmood.features.FeatureExtractor`), the
network runs in ONNX Runtime by default (faster on a CPU, no autograd), with the
torch weights as the fallback backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from callmood.errors import CallmoodError
from callmood.features import FeatureConfig, FeatureExtractor
from callmood.models.package import (
    ABSOLUTE_INPUT,
    DEFAULT_MODEL_DIR,
    ModelPackageError,
    caller_prior_of,
    load_model_package,
    read_model_metadata,
)
from callmood.normalization import CallerPrior, normalize_alone

Backend = Literal["onnx", "torch"]
BACKENDS = ("onnx", "torch")


class ModelLoadError(CallmoodError):
    """A model directory is missing, incomplete or not a callmood model package."""


class PredictionInputError(CallmoodError):
    """Waveforms given to :meth:`EmotionModel.predict` have the wrong shape, type or values."""


def default_model_dir() -> Path:
    """The bundled default model (``callmood/models/default``)."""
    return Path(DEFAULT_MODEL_DIR)


def pad_centered(samples: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad (or centre-crop) mono ``samples`` to ``length`` samples, the audio in the middle."""
    samples = np.asarray(samples, dtype=np.float32)
    if len(samples) >= length:
        offset = (len(samples) - length) // 2
        return samples[offset : offset + length]
    padded = np.zeros(length, dtype=np.float32)
    offset = (length - len(samples)) // 2
    padded[offset : offset + len(samples)] = samples
    return padded


class EmotionModel:
    """A speech-emotion model ready for inference.

    Attributes
    ----------
    name
        The model's name from ``model.json``.
    labels
        Class names, in the order of :meth:`predict`'s columns.
    feature_config
        The features the model was trained on.
    window_seconds
        The length of audio (seconds) the model was trained on.
    backend
        ``"onnx"`` or ``"torch"``: what actually runs.
    caller_prior
        For a caller-normalised model (callmood.normalization): the training population's
        feature statistics each caller is mapped onto; None for a plain model.
    absolute_statistics
        The network also takes the windows before caller normalisation
        (``model_config.absolute_statistics``): :meth:`predict_features` needs them.
    """

    def __init__(
        self,
        *,
        name: str,
        labels: tuple[str, ...],
        feature_config: FeatureConfig,
        window_seconds: float,
        backend: Backend,
        onnx_session: object | None = None,
        torch_model: torch.nn.Module | None = None,
        directory: Path | None = None,
        caller_prior: CallerPrior | None = None,
        absolute_statistics: bool = False,
    ) -> None:
        if (onnx_session is None) == (torch_model is None):
            raise ValueError("give exactly one of onnx_session or torch_model")
        self.name = name
        self.labels = tuple(labels)
        self.feature_config = feature_config
        self.window_seconds = float(window_seconds)
        self.backend: Backend = backend
        self.directory = directory
        self.caller_prior = caller_prior
        self.absolute_statistics = absolute_statistics
        self._session = onnx_session
        self._torch_model = torch_model
        self._extractor = FeatureExtractor(feature_config).eval()
        # The log-mel spectrogram before the per-clip top_db floor and the DCT: computed
        # once over overlapping windows, then floored per window (window_features).
        self._log_mel = FeatureExtractor(replace(feature_config, kind="logmel", top_db=None)).eval()

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @classmethod
    def load(
        cls,
        directory: str | Path | None = None,
        *,
        backend: Backend = "onnx",
        num_threads: int | None = None,
    ) -> EmotionModel:
        """Load a model package directory.

        Parameters
        ----------
        directory
            A directory written by :func:`callmood.models.package.save_model_package`;
            None loads the bundled default model.
        backend
            ``"onnx"`` (ONNX Runtime; falls back to torch when the package has no
            ``model.onnx``) or ``"torch"``.
        num_threads
            Intra-op threads for ONNX Runtime (None = its default: all cores).
        """
        if backend not in BACKENDS:
            raise ModelLoadError(f"backend must be one of {BACKENDS}, got {backend!r}")
        directory = Path(directory) if directory is not None else default_model_dir()
        if not directory.is_dir():
            hint = " (no default model is bundled yet; pass a model directory)"
            raise ModelLoadError(
                f"model directory {directory} not found"
                + (hint if directory == default_model_dir() else "")
            )
        meta = read_model_metadata(directory)
        if meta.get("speaker_normalization"):
            # Its inputs must be standardised with statistics of the speaker's whole (and
            # emotionally varied) speech, which a call does not provide; fed plain features it
            # would answer confidently and wrongly.
            raise ModelLoadError(
                f"{directory} was trained with speaker_normalization, which needs each "
                "speaker's statistics over all their clips; it can be tested with "
                "`callmood evaluate --model` but not used to analyse calls. Train with "
                "speaker_normalization: false for analysis."
            )
        feature_config = FeatureConfig.from_dict(meta["feature_config"])
        try:
            caller_prior = caller_prior_of(meta, feature_config, directory)
        except ModelPackageError as error:
            raise ModelLoadError(str(error)) from None
        common = dict(
            name=str(meta.get("name", directory.name)),
            labels=tuple(meta["labels"]),
            feature_config=feature_config,
            window_seconds=float(meta["window_seconds"]),
            directory=directory,
            caller_prior=caller_prior,
            absolute_statistics=meta["model_config"].get("absolute_statistics") is True,
        )
        onnx_path = directory / "model.onnx"
        if backend == "onnx" and onnx_path.is_file():
            import onnxruntime

            options = onnxruntime.SessionOptions()
            if num_threads:
                options.intra_op_num_threads = int(num_threads)
                options.inter_op_num_threads = 1
            try:
                session = onnxruntime.InferenceSession(
                    str(onnx_path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as error:  # ORT raises its own non-public exception types
                raise ModelLoadError(f"{onnx_path}: not a loadable ONNX model ({error})") from error
            return cls(backend="onnx", onnx_session=session, **common)
        package = load_model_package(directory)
        return cls(backend="torch", torch_model=package.model.eval(), **common)

    def predict(self, waveforms: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of windows.

        A caller-normalised model treats each window as the first of a call of its own;
        a call's windows in order go through :class:`callmood.analysis.StreamingAnalyzer`.

        Parameters
        ----------
        waveforms
            float32 (B, samples) at 16 kHz, amplitudes in [-1, 1]; every row the
            same length (pad short windows, e.g. with :func:`pad_centered`).

        Returns
        -------
        numpy.ndarray
            (B, len(labels)) float32 probabilities; each row sums to 1.
        """
        waveforms = self._check(waveforms)
        if len(waveforms) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        with torch.inference_mode():
            features = self._extractor(torch.from_numpy(waveforms))
        return self.predict_features(features.numpy())

    def predict_features(
        self,
        features: np.ndarray,
        *,
        normalized: bool = False,
        absolute: np.ndarray | None = None,
    ) -> np.ndarray:
        """Class probabilities for a batch of feature maps (B, num_features, frames).

        The maps are what :meth:`window_features` (or the model's feature extractor)
        computes; returns (B, len(labels)) float32 probabilities. For a caller-normalised
        model, each map is normalised as a call of its own unless `normalized` says a
        :class:`callmood.normalization.CallerNormalizer` already did; a model with
        :attr:`absolute_statistics` then also needs `absolute`, the same maps before.
        """
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 3 or features.shape[1] != self.feature_config.num_features:
            raise PredictionInputError(
                f"predict_features needs shape (batch, {self.feature_config.num_features}, "
                f"frames), got shape {features.shape}"
            )
        if len(features) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if not normalized:
            absolute = features  # each map is all there is of its caller
            if self.caller_prior is not None:
                features = normalize_alone(torch.from_numpy(features), self.caller_prior).numpy()
        feed = {"features": features}
        if self.absolute_statistics:
            if absolute is None or np.shape(absolute) != features.shape:
                raise PredictionInputError(
                    "this model also takes the windows before caller normalisation: pass "
                    f"absolute= of shape {features.shape} with normalized=True"
                )
            feed[ABSOLUTE_INPUT] = np.ascontiguousarray(absolute, dtype=np.float32)
        with torch.inference_mode():
            if self._session is not None:
                logits = self._session.run(["logits"], feed)[0]
                logits = torch.from_numpy(np.asarray(logits, dtype=np.float32))
            else:
                extra = {}
                if self.absolute_statistics:
                    extra["absolute_features"] = torch.from_numpy(feed[ABSOLUTE_INPUT])
                logits = self._torch_model(torch.from_numpy(features), **extra)
            probabilities = torch.softmax(logits.float(), dim=-1).numpy()
        return probabilities.astype(np.float32, copy=False)

    def window_features(
        self, audio: np.ndarray, starts: Sequence[int], length: int | None = None
    ) -> np.ndarray:
        """Feature maps of the windows ``audio[s : s + length]`` for ``s`` in ``starts``.

        The same maps :meth:`predict` computes for each window on its own (up to float
        rounding), but overlapping windows share one spectrogram: with windows every
        second over 3 s of audio that is a third of the work. Frames are centred, so the
        few frames at each window edge that would hear audio outside the window are
        computed again from the window's own samples (zero-padded, as alone), and the
        ``top_db`` floor is taken per window.

        Parameters
        ----------
        audio
            float32 mono samples at 16 kHz in [-1, 1], covering every window.
        starts
            Window starts, in samples from ``audio[0]``; each window must fit in ``audio``.
        length
            Window length in samples (default: the model's window, ``window_samples``).

        Returns
        -------
        numpy.ndarray
            (len(starts), num_features, frames) float32, as input to :meth:`predict_features`.
        """
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        starts = np.asarray(starts, dtype=np.int64).reshape(-1)
        length = self.window_samples if length is None else int(length)
        config = self.feature_config
        hop, reach = config.hop_length, config.n_fft // 2
        if len(starts) and (starts.min() < 0 or starts.max() + length > len(audio)):
            raise PredictionInputError(
                f"windows of {length} samples from {starts.min()} to {starts.max()} do not "
                f"fit in {len(audio)} samples of audio"
            )
        head = -(-reach // hop)  # frames at the start that hear samples before the window
        tail_from = (length - reach) // hop + 1  # frames from here hear samples after it
        frames = config.frames_for(length)
        if len(starts) == 0:
            return np.zeros((0, config.num_features, frames), dtype=np.float32)
        on_grid = config.center and not (starts % hop).any()
        if not on_grid or head * hop + reach > length or tail_from < head:
            # The windows' frames are not on one grid (or a window is too short to
            # have inner frames): each window on its own.
            windows = np.stack([audio[s : s + length] for s in starts])
            with torch.inference_mode():
                return self._extractor(torch.from_numpy(windows)).numpy()
        first, last = int(starts.min()), int(starts.max()) + length
        with torch.inference_mode():
            spectrogram = self._log_mel(torch.from_numpy(audio[first:last])[None])[0].T
            index = torch.from_numpy((starts - first) // hop)[:, None] + torch.arange(frames)
            maps = spectrogram[index]  # (windows, frames, n_mels)
            inner_head = np.flatnonzero(starts > first)
            if len(inner_head):  # audio before these windows: their first frames alone
                clips = np.stack([audio[s : s + head * hop + reach] for s in starts[inner_head]])
                alone = self._log_mel(torch.from_numpy(clips)).transpose(1, 2)
                maps[torch.from_numpy(inner_head), :head] = alone[:, :head]
            inner_tail = np.flatnonzero(starts + length < last)
            if len(inner_tail):  # audio after these windows: their last frames alone
                offset = (tail_from - head) * hop  # on the frame grid, `head` frames of margin
                clips = np.stack([audio[s + offset : s + length] for s in starts[inner_tail]])
                alone = self._log_mel(torch.from_numpy(clips)).transpose(1, 2)
                maps[torch.from_numpy(inner_tail), tail_from:] = alone[
                    :, head : head + frames - tail_from
                ]
            if config.top_db is not None:
                peak = maps.amax(dim=(1, 2), keepdim=True)
                maps = torch.maximum(maps, peak - config.top_db)
            dct = self._extractor.dct
            features = maps if dct is None else torch.matmul(maps, dct.T)
            return features.transpose(1, 2).contiguous().numpy()

    def _check(self, waveforms: np.ndarray) -> np.ndarray:
        if isinstance(waveforms, torch.Tensor):
            waveforms = waveforms.detach().cpu().numpy()
        if not isinstance(waveforms, np.ndarray):
            raise PredictionInputError(
                f"predict needs a numpy array (batch, samples), got {type(waveforms).__name__}"
            )
        if waveforms.ndim != 2:
            raise PredictionInputError(
                f"predict needs shape (batch, samples) at {self.sample_rate} Hz, "
                f"got shape {waveforms.shape}"
            )
        if not np.issubdtype(waveforms.dtype, np.floating):
            raise PredictionInputError(
                f"predict needs float samples in [-1, 1], got dtype {waveforms.dtype}"
            )
        minimum = self.feature_config.n_fft
        if len(waveforms) and waveforms.shape[1] < minimum:
            raise PredictionInputError(
                f"windows of {waveforms.shape[1]} samples are too short; need >= {minimum} "
                f"({minimum / self.sample_rate:.3f} s at {self.sample_rate} Hz)"
            )
        waveforms = np.ascontiguousarray(waveforms, dtype=np.float32)
        if not np.isfinite(waveforms).all():
            raise PredictionInputError("predict got NaN or infinite samples")
        return waveforms
