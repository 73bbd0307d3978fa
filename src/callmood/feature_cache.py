"""On-disk cache of per-file features, so training computes each clip's features once.

Entries are keyed by the audio file (absolute path, size, modification time) and the feature
config's hash, stored as plain ``.npy`` arrays (no pickles), and written atomically so several
processes can fill one cache at the same time.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from callmood.features import FeatureConfig, FeatureError, FeatureExtractor

logger = logging.getLogger(__name__)


class FeatureCache:
    """Features of audio files, computed on first use and then read back from ``cache_dir``.

    Parameters
    ----------
    cache_dir
        Folder for the cache (created if needed). Each feature config gets its own sub-folder
        ``<cache_dir>/<config hash>/`` with a ``config.json`` saying what it holds.
    config
        The features to compute (default :class:`FeatureConfig`).

    Notes
    -----
    Files are decoded with :func:`callmood.audio.load_audio` at ``config.sample_rate``; a file
    with several channels is mixed down to mono (their mean), as corpus clips are mono
    recordings of one speaker. An edited file (new size or modification time) is recomputed.
    """

    def __init__(self, cache_dir: str | Path, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self.directory = Path(cache_dir) / self.config.config_hash()
        self.hits = 0
        self.misses = 0
        self._extractor = FeatureExtractor(self.config).eval()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FeatureError(
                f"{cache_dir}: cannot create feature cache folder ({error})"
            ) from None
        description = self.directory / "config.json"
        if not description.exists():
            _write_atomically(
                description, json.dumps(self.config.to_dict(), indent=2).encode("utf-8")
            )

    def cache_path(self, audio_path: str | Path) -> Path:
        """Where the features of ``audio_path`` (as it is now on disk) are stored."""
        source = Path(audio_path)
        try:
            status = source.stat()
        except FileNotFoundError:
            raise FeatureError(f"{audio_path}: audio file not found") from None
        except OSError as error:
            raise FeatureError(f"{audio_path}: cannot read audio file ({error})") from None
        identity = f"{source.resolve()}\0{status.st_size}\0{status.st_mtime_ns}"
        key = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()
        return self.directory / key[:2] / f"{key}.npy"

    def __contains__(self, audio_path: str | Path) -> bool:
        return self.cache_path(audio_path).is_file()

    def get(self, audio_path: str | Path) -> torch.Tensor:
        """Features of one audio file, shape (num_features, frames), float32.

        Raises
        ------
        FeatureError
            The file does not exist.
        callmood.audio.AudioError
            The file is not decodable audio.
        """
        entry = self.cache_path(audio_path)
        cached = self._read(entry)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        features = self.compute(audio_path)
        entry.parent.mkdir(parents=True, exist_ok=True)
        buffer = _npy_bytes(features.numpy())
        _write_atomically(entry, buffer)
        return features

    def compute(self, audio_path: str | Path) -> torch.Tensor:
        """Decode ``audio_path`` and compute its features, bypassing the cache."""
        from callmood.audio import load_audio

        audio = load_audio(audio_path, sample_rate=self.config.sample_rate)
        waveform = audio.samples.mean(axis=0, dtype=np.float32)  # (samples,)
        with torch.no_grad():
            features = self._extractor(torch.from_numpy(waveform)[None])  # (1, F, frames)
        return features[0].contiguous()

    def _read(self, entry: Path) -> torch.Tensor | None:
        if not entry.is_file():
            return None
        try:
            array = np.load(entry, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            # A damaged entry (disk full, killed writer on a filesystem without atomic rename)
            # is a cache miss, not a failure: it is recomputed and overwritten.
            logger.warning("recomputing damaged feature cache entry %s: %s", entry, error)
            return None
        expected_rows = self.config.num_features
        if array.dtype != np.float32 or array.ndim != 2 or array.shape[0] != expected_rows:
            logger.warning("recomputing feature cache entry %s of shape %s", entry, array.shape)
            return None
        return torch.from_numpy(array)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write_atomically(path: Path, content: bytes) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the cache from other users
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
