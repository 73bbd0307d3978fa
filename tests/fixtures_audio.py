"""Helpers that build real audio files for the audio tests: tones, FFmpeg encodes, G.711 WAVs."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import av
import numpy as np
import scipy.signal


def tone(frequency: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine of ``frequency`` Hz, ``seconds`` long, at ``sample_rate`` Hz."""
    time = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def peak_frequency(samples: np.ndarray, sample_rate: int) -> float:
    """The frequency (Hz) of the strongest spectral peak of a 1-D signal."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[np.argmax(spectrum)])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def encode_with_ffmpeg(
    path: Path,
    samples: np.ndarray,
    sample_rate: int,
    *,
    container: str,
    codec: str,
    codec_rate: int | None = None,
) -> Path:
    """Write (channels, frames) float32 audio with PyAV's FFmpeg, e.g. ipod/aac, webm/libopus."""
    layout = {1: "mono", 2: "stereo"}[samples.shape[0]]
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=codec_rate or sample_rate)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples.T.reshape(1, -1), dtype=np.float32),
            format="flt",
            layout=layout,
        )
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            output.mux(packet)
    return path


def g711_wav_bytes(codes: bytes, codec: str, sample_rate: int = 8000) -> bytes:
    """Raw G.711 code words wrapped in a WAV header (format 7 = mu-law, 6 = A-law), mono."""
    format_tag = {"mulaw": 7, "alaw": 6}[codec]
    fmt = struct.pack("<HHIIHHH", format_tag, 1, sample_rate, sample_rate, 1, 8, 0)
    fact = struct.pack("<I", len(codes))
    body = io.BytesIO()
    body.write(b"WAVE")
    body.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
    body.write(b"fact" + struct.pack("<I", len(fact)) + fact)
    body.write(b"data" + struct.pack("<I", len(codes)) + codes + b"\0" * (len(codes) & 1))
    return b"RIFF" + struct.pack("<I", len(body.getvalue())) + body.getvalue()


def forged_wav_bytes(
    *,
    channels: int = 1,
    sample_rate: int = 16000,
    bits: int = 16,
    format_tag: int = 1,
    data: bytes = b"\0" * 32000,
    declared_data_bytes: int | None = None,
) -> bytes:
    """A WAV file whose header says whatever it is told, in front of ``data``.

    For bad-input tests: absurd channel counts, sample rates, bit depths and format
    tags, or a data chunk claiming more bytes (``declared_data_bytes``) than follow.
    """
    block = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH",
        format_tag,
        channels & 0xFFFF,
        sample_rate & 0xFFFFFFFF,
        (sample_rate * block) & 0xFFFFFFFF,
        block & 0xFFFF,
        bits,
    )
    declared = len(data) if declared_data_bytes is None else declared_data_bytes
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", declared & 0xFFFFFFFF) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def aligned_correlation(reference: np.ndarray, decoded: np.ndarray, max_lag: int) -> float:
    """Correlation coefficient of two 1-D signals at the best lag within ``max_lag`` frames.

    Lossy codecs add a delay (AAC priming, MP3 encoder delay), so compare after aligning.
    """
    cross = scipy.signal.correlate(decoded, reference, mode="full", method="fft")
    lags = np.arange(-len(reference) + 1, len(decoded))
    window = np.abs(lags) <= max_lag
    lag = int(lags[window][np.argmax(cross[window])])
    if lag >= 0:
        a, b = reference, decoded[lag:]
    else:
        a, b = reference[-lag:], decoded
    length = min(len(a), len(b))
    return float(np.corrcoef(a[:length], b[:length])[0, 1])


class CountingReader(io.RawIOBase):
    """A seekable binary file that counts the bytes read from it."""

    def __init__(self, data: bytes, name: str) -> None:
        self._buffer = io.BytesIO(data)
        self.name = name
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, target: bytearray) -> int:
        chunk = self._buffer.read(len(target))
        target[: len(chunk)] = chunk
        self.bytes_read += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._buffer.seek(offset, whence)

    def tell(self) -> int:
        return self._buffer.tell()


class PipeReader(io.RawIOBase):
    """A binary stream that cannot seek, like a pipe or an HTTP upload."""

    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, target: bytearray) -> int:
        chunk = self._buffer.read(len(target))
        target[: len(chunk)] = chunk
        return len(chunk)
