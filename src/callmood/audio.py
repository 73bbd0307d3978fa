"""Decode any audio input into float32 samples per channel, resampled, with clear errors.

Formats are recognised by content: libsndfile (`soundfile`) reads WAV, AIFF/AIFF-C, FLAC,
Ogg Vorbis and MP3; FFmpeg (`av`) reads everything else (Ogg Opus, M4A/AAC, WebM, ...).
"""

from __future__ import annotations

import io
import math
import operator
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import soundfile
import soxr

from callmood.errors import CallmoodError

SAMPLE_RATE = 16000
"""Hz: the rate every stage after decoding works at."""

TELEPHONE_SAMPLE_RATE = 8000
"""Hz: the rate of G.711 (mu-law / A-law) telephone audio."""

RESAMPLE_QUALITY = "HQ"
"""soxr quality preset: 'HQ' keeps the passband flat and aliasing below -100 dB."""

G711_CODECS = ("mulaw", "alaw")

FILE_SAMPLE_RATES = (4000, 768_000)
"""Hz: the lowest and highest sample rate a file may declare. Below 4 kHz there is no
speech band left, above 768 kHz no audio interface records; a header outside is damaged
or forged (a 1 Hz header would make a 57 kB file decode into 8 hours at 16 kHz)."""

# FFmpeg gives no exact length for some streams: a webm's duration is in milliseconds and
# covers the Opus pre-skip, so a whole file can decode a few tens of ms short of it.
_STREAM_LENGTH_TOLERANCE_SECONDS = 0.1
# MP3 length comes from the Xing/LAME header (or an estimate from the bitrate when there is
# none), and decoders differ by the encoder delay and padding (up to two 1152-frame granules).
_MP3_LENGTH_TOLERANCE_FRAMES = 2 * 1152
_MP3_LENGTH_TOLERANCE_FRACTION = 0.01
# Enough of a file's end to hold at least one whole Ogg page (at most 65 307 bytes).
_OGG_TAIL_BYTES = 2 * 65536
_SNIFF_BYTES = 64
# libsndfile's frame count for a stream whose length it cannot tell (SF_COUNT_MAX).
_UNKNOWN_FRAMES = 2**62
# The largest array a whole-file read allocates at once; a header claiming more (FLAC
# may declare 2**36 frames in a few bytes) is read block by block, as far as it goes.
_MAX_SINGLE_READ_BYTES = 2**30
# Found by scripts/fuzz.py: PyAV 18 crashes the process decoding more channels than this.
_MAX_FFMPEG_CHANNELS = 16
# Subtypes libsndfile decodes from integers (PCM, companded, ADPCM, lossless) and turns
# into float by scaling with 1/2**(bits - 1): never NaN or infinite, never beyond [-1, 1].
# Lossy float decoders (Vorbis, Opus, MPEG) and float files are not in the list.
_INTEGER_SUBTYPES = frozenset(
    {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW", "IMA_ADPCM",
     "MS_ADPCM", "GSM610", "ALAC_16", "ALAC_20", "ALAC_24", "ALAC_32"}
)  # fmt: skip


class AudioError(CallmoodError):
    """An audio input could not be turned into samples (base of all audio errors)."""


class AudioNotFoundError(AudioError):
    """The audio file does not exist or cannot be opened."""


class EmptyAudioError(AudioError):
    """The input has 0 bytes, or a valid header with no audio frames."""


class NotAudioError(AudioError):
    """The input is not in any audio format we can read (text, an image, garbage)."""


class CorruptAudioError(AudioError):
    """An audio file that is damaged or truncated: its header promises more than it holds."""


class AudioTooLongError(AudioError):
    """The audio is longer than the caller's ``max_seconds`` limit."""


class InvalidSamplesError(AudioError):
    """The decoded samples contain NaN or infinite values (float files)."""


class ChannelError(AudioError):
    """A requested channel does not exist in the file."""


@dataclass(frozen=True)
class Audio:
    """Decoded audio: float32 samples shaped (channels, frames) in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int
    source: str
    original_sample_rate: int
    original_channels: int

    @property
    def duration_seconds(self) -> float:
        """Length in seconds."""
        return self.samples.shape[-1] / self.sample_rate

    @property
    def num_channels(self) -> int:
        """Number of channels in ``samples`` (after channel selection)."""
        return self.samples.shape[0]


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the audio.

    ``frames`` is exact for WAV, AIFF, FLAC, Ogg and MP3 with a length header; for formats
    read through FFmpeg it is derived from the container's duration, and 0 when unknown.
    """

    sample_rate: int
    channels: int
    frames: int
    duration_seconds: float
    format: str
    codec: str = ""


# ----------------------------------------------------------------------------- sources


class _Source:
    """One input (path, bytes or file object), checked to exist and not be empty."""

    def __init__(self, source: str | Path | bytes | BinaryIO) -> None:
        self.path: str | None = None
        self.buffer: BinaryIO | None = None
        if isinstance(source, str | os.PathLike):
            self.name = os.fspath(source)
            self._open_path()
        elif isinstance(source, bytes | bytearray | memoryview):
            self.name = "<bytes>"
            self.buffer = io.BytesIO(bytes(source))
        elif hasattr(source, "read"):
            file_name = getattr(source, "name", None)
            self.name = file_name if isinstance(file_name, str) else "<file object>"
            self.buffer = self._seekable_binary(source)
        else:
            raise AudioError(
                f"audio source must be a path, bytes or a binary file object, "
                f"got {type(source).__name__}"
            )
        self.size = self._size()
        if self.size == 0:
            raise EmptyAudioError(f"{self.name}: the file is empty (0 bytes)")
        with self.open() as file:
            self.head = file.read(_SNIFF_BYTES)

    def _open_path(self) -> None:
        if not os.path.exists(self.name):
            raise AudioNotFoundError(f"{self.name}: no such file")
        if os.path.isdir(self.name):
            raise AudioNotFoundError(f"{self.name}: is a directory, not an audio file")
        try:
            with open(self.name, "rb"):
                pass
        except OSError as error:
            raise AudioNotFoundError(f"{self.name}: cannot be opened ({error.strerror})") from error
        self.path = self.name

    def _seekable_binary(self, file: BinaryIO) -> BinaryIO:
        probe = file.read(0)
        if not isinstance(probe, bytes | bytearray):
            raise AudioError(f"{self.name}: file object is in text mode; open it with 'rb'")
        # Decoders seek to absolute offsets, so anything but a seekable stream at its
        # start is copied into memory first.
        if file.seekable() and file.tell() == 0:
            return file
        return io.BytesIO(file.read())

    def _size(self) -> int:
        if self.path is not None:
            return os.path.getsize(self.path)
        assert self.buffer is not None
        self.buffer.seek(0, io.SEEK_END)
        size = self.buffer.tell()
        self.buffer.seek(0)
        return size

    def open(self) -> BinaryIO:
        """A binary file positioned at the start (closing it leaves a caller's buffer open)."""
        if self.path is not None:
            return open(self.path, "rb")
        assert self.buffer is not None
        self.buffer.seek(0)
        return _NonClosing(self.buffer)

    def target(self) -> str | BinaryIO:
        """What to hand a decoder: the path, or the buffer rewound to the start."""
        if self.path is not None:
            return self.path
        assert self.buffer is not None
        self.buffer.seek(0)
        return self.buffer


class _NonClosing(io.BufferedIOBase):
    """A view of a caller's file object that does not close it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def read(self, size: int | None = -1) -> bytes:
        return self._raw.read(-1 if size is None else size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def _looks_like_audio_container(head: bytes) -> bool:
    """True when the first bytes are the signature of an audio or media container."""
    signatures = (
        b"RIFF", b"RIFX", b"RF64", b"BW64", b"FORM", b"fLaC", b"OggS", b"ID3", b"caff",
        b".snd", b"wvpk", b"#!AMR", b"NIST_1A", b"MAC ", b"\x1a\x45\xdf\xa3", b"riff",
    )  # fmt: skip
    if head.startswith(signatures) or head[4:8] == b"ftyp":
        return True
    # An MPEG audio (MP3) or ADTS (AAC) frame starts with an 11-bit sync word.
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0


def _not_audio(source: _Source, detail: str) -> AudioError:
    """NotAudioError for unknown content, CorruptAudioError for a damaged known format."""
    if _looks_like_audio_container(source.head):
        return CorruptAudioError(f"{source.name}: damaged audio file, cannot be decoded ({detail})")
    # The sniffed head may end inside a multi-byte character, hence "ignore".
    text = source.head.decode("utf-8", errors="ignore")
    is_text = len(text) >= len(source.head) // 2 and all(
        character.isprintable() or character in "\t\r\n" for character in text
    )
    looks_like = "text" if is_text else "binary data"
    return NotAudioError(
        f"{source.name}: not an audio file (the content looks like {looks_like}, "
        f"not a format soundfile or FFmpeg can decode)"
    )


# ------------------------------------------------------------- header truncation checks


def _check_not_truncated(source: _Source) -> None:
    """Raise CorruptAudioError when the header promises more audio than the file holds.

    libsndfile quietly shortens a truncated WAV/AIFF/Ogg to what is there; we refuse, so
    nothing partially decoded is ever returned as if it were whole.
    """
    head = source.head
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        _check_riff_data(source)
    elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        _check_aiff_data(source)
    elif head[:4] == b"OggS":
        _check_ogg_end(source)


def _truncated(source: _Source, declared_bytes: int, present_bytes: int) -> CorruptAudioError:
    percent = 100.0 * present_bytes / declared_bytes
    return CorruptAudioError(
        f"{source.name}: truncated audio file: the header declares {declared_bytes} bytes of "
        f"audio data but only {present_bytes} ({percent:.0f}%) are present"
    )


def _check_riff_data(source: _Source) -> None:
    with source.open() as file:
        position = 12
        rf64_data_size = None
        while position + 8 <= source.size:
            file.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", file.read(8))
            if chunk_id == b"ds64" and chunk_size >= 16:
                rf64_data_size = struct.unpack("<QQ", file.read(16))[1]
            if chunk_id == b"data":
                declared = chunk_size
                if chunk_size == 0xFFFFFFFF and rf64_data_size is not None:
                    declared = rf64_data_size
                elif chunk_size == 0xFFFFFFFF:
                    return  # a streamed WAV that never got its length written
                present = source.size - (position + 8)
                if declared > present:
                    raise _truncated(source, declared, present)
                return
            position += 8 + chunk_size + (chunk_size & 1)


def _check_aiff_data(source: _Source) -> None:
    with source.open() as file:
        position = 12
        while position + 8 <= source.size:
            file.seek(position)
            chunk_id, chunk_size = struct.unpack(">4sI", file.read(8))
            if chunk_id == b"SSND":
                header = file.read(8)
                if len(header) < 8:
                    raise _truncated(source, chunk_size, max(0, source.size - position - 8))
                (offset,) = struct.unpack(">I", header[:4])
                declared = chunk_size - 8 - offset
                present = source.size - (position + 16 + offset)
                if declared > present:
                    raise _truncated(source, declared, max(0, present))
                return
            position += 8 + chunk_size + (chunk_size & 1)


def _check_ogg_end(source: _Source) -> None:
    """An Ogg file ends with a whole page flagged end-of-stream; a cut one does not."""
    tail_start = max(0, source.size - _OGG_TAIL_BYTES)
    with source.open() as file:
        file.seek(tail_start)
        tail = file.read()
    candidate = tail.find(b"OggS")
    while candidate != -1:
        end_state = _walk_ogg_pages(tail, candidate)
        if end_state is not None:
            complete, end_of_stream = end_state
            if not complete:
                raise CorruptAudioError(
                    f"{source.name}: truncated Ogg file: its last page is cut off"
                )
            if not end_of_stream:
                raise CorruptAudioError(
                    f"{source.name}: truncated Ogg file: it stops without the end-of-stream page"
                )
            return
        # "OggS" inside compressed data, not a page: try the next one.
        candidate = tail.find(b"OggS", candidate + 1)


def _walk_ogg_pages(tail: bytes, start: int) -> tuple[bool, bool] | None:
    """Follow pages from ``start`` to the end: (last page complete, last page is EOS).

    None when ``start`` does not begin a chain of pages that reaches the end of the data.
    """
    position = start
    end_of_stream = False
    while position < len(tail):
        if tail[position : position + 4] != b"OggS" or len(tail) < position + 27:
            return None if position == start else (False, end_of_stream)
        header_type = tail[position + 5]
        segment_count = tail[position + 26]
        table = tail[position + 27 : position + 27 + segment_count]
        if len(table) < segment_count:
            return (False, False)
        page_end = position + 27 + segment_count + sum(table)
        if page_end > len(tail):
            return (False, False)
        end_of_stream = bool(header_type & 0x04)
        position = page_end
    return (True, end_of_stream)


# ----------------------------------------------------------------------------- decoders


class _SoundfileDecoder:
    """libsndfile: WAV, AIFF, FLAC, Ogg Vorbis/Opus, MP3 and the rest of its formats."""

    def __init__(self, source: _Source, file: soundfile.SoundFile) -> None:
        self.source = source
        self.file = file
        self.sample_rate = int(file.samplerate)
        self.channels = int(file.channels)
        self.frames: int | None = int(file.frames)
        self.info = AudioInfo(
            sample_rate=self.sample_rate,
            channels=self.channels,
            frames=int(file.frames),
            duration_seconds=file.frames / file.samplerate,
            format=file.format,
            codec=file.subtype,
        )
        self.declared_frames = int(file.frames)
        self.integer_samples = file.subtype in _INTEGER_SUBTYPES
        self.frame_tolerance = 0
        if file.format == "MP3":
            self.frame_tolerance = _MP3_LENGTH_TOLERANCE_FRAMES + int(
                _MP3_LENGTH_TOLERANCE_FRACTION * file.frames
            )

    def read_all(self) -> np.ndarray:
        """All frames as (frames, channels) float32."""
        claimed_bytes = self.file.frames * self.channels * 4
        if not self.file.seekable() or claimed_bytes > _MAX_SINGLE_READ_BYTES:
            # libsndfile calls some codecs (GSM 6.10) unseekable, and one read would allocate
            # all a header claims: read piece by piece.
            parts = list(self.blocks(65536))
            return np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)
        try:
            return self.file.read(dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
            raise _decode_failed(self.source, error) from error

    def blocks(self, frames_per_block: int, *, reuse: bool = False) -> Iterator[np.ndarray]:
        """Successive (frames, channels) float32 blocks of at most ``frames_per_block``.

        With ``reuse`` every block is a view of one buffer that the next block overwrites:
        no allocation per block, for callers that copy each block before asking for the next.
        """
        buffer: np.ndarray | None = None
        try:
            while True:
                frames = frames_per_block
                if self.file.seekable():
                    # As soundfile itself does without ``out=``: never ask past the
                    # declared end, so the buffer is no bigger than the file.
                    frames = max(0, min(frames, self.file.frames - self.file.tell()))
                if not reuse:
                    block = self.file.read(frames, dtype="float32", always_2d=True)
                else:
                    if buffer is None:  # later reads never ask for more than the first
                        buffer = np.empty((frames, self.channels), np.float32)
                    block = self.file.read(min(frames, len(buffer)), out=buffer)
                if len(block) == 0:
                    return
                yield block
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
            raise _decode_failed(self.source, error) from error

    def close(self) -> None:
        self.file.close()


class _FFmpegDecoder:
    """FFmpeg through PyAV: M4A/AAC, WebM, video files with sound and other formats."""

    def __init__(self, source: _Source, container: av.container.InputContainer) -> None:
        self.source = source
        self.container = container
        if not container.streams.audio:
            format_name = container.format.name
            container.close()
            raise NotAudioError(
                f"{source.name}: not an audio file: it has no audio stream "
                f"(FFmpeg reads it as {format_name})"
            )
        self.stream = container.streams.audio[0]
        context = self.stream.codec_context
        if context is None:  # a codec FFmpeg does not know (e.g. a WAV format tag 0x1234)
            container.close()
            raise CorruptAudioError(
                f"{source.name}: damaged audio file or unknown codec: FFmpeg cannot decode "
                "its audio stream"
            )
        self.sample_rate = int(context.sample_rate or 0)
        self.channels = int(context.channels or 0)
        if self.channels > _MAX_FFMPEG_CHANNELS:
            container.close()
            # PyAV's AudioFrame.to_ndarray segfaults on frames of more channels.
            raise CorruptAudioError(
                f"{source.name}: the header declares {self.channels} channels; audio read "
                f"through FFmpeg has at most {_MAX_FFMPEG_CHANNELS}"
            )
        if self.sample_rate <= 0 or self.channels <= 0:
            container.close()
            raise CorruptAudioError(
                f"{source.name}: the audio stream does not declare its sample rate and channels"
            )
        duration = self._declared_seconds()
        frames = round(duration * self.sample_rate) if duration is not None else 0
        # Only indexed lengths are exact enough to call a shorter decode truncated; a length
        # estimated from the bitrate (ADTS, headerless MP3) is not.
        self.declared_frames = frames if self._length_is_indexed() else None
        self.frame_tolerance = round(_STREAM_LENGTH_TOLERANCE_SECONDS * self.sample_rate)
        # Converted to float by FFmpeg, whatever the codec: checked like a float file.
        self.integer_samples = False
        # An estimate is no ground to refuse a file as too long: decode and count instead.
        self.frames = self.declared_frames or None
        format_name = container.format.name.split(",")[0]
        self.info = AudioInfo(
            sample_rate=self.sample_rate,
            channels=self.channels,
            frames=frames,
            duration_seconds=frames / self.sample_rate,
            format={"mov": "MP4"}.get(format_name, format_name.upper()),
            codec=context.name.upper(),
        )

    def _declared_seconds(self) -> float | None:
        if self.stream.duration is not None and self.stream.time_base is not None:
            return float(self.stream.duration * self.stream.time_base)
        if self.container.duration is not None:
            return self.container.duration / av.time_base
        return None

    def _length_is_indexed(self) -> bool:
        return self.stream.duration is not None or "matroska" in self.container.format.name

    def _frames(self) -> Iterator[np.ndarray]:
        # Any sample format (s16, s32, planar or packed) to float32 planar, same rate.
        converter = av.AudioResampler(format="fltp")
        try:
            for frame in self.container.decode(self.stream):
                for converted in converter.resample(frame):
                    yield self._to_array(converted)
            for converted in converter.resample(None):
                yield self._to_array(converted)
        except av.error.FFmpegError as error:
            raise _decode_failed(self.source, error) from error

    def _to_array(self, frame: av.AudioFrame) -> np.ndarray:
        planes = frame.to_ndarray()  # (channels, samples)
        if planes.shape[0] != self.channels:
            raise CorruptAudioError(
                f"{self.source.name}: the channel count changes mid-stream "
                f"({self.channels} -> {planes.shape[0]})"
            )
        return planes.T

    def read_all(self) -> np.ndarray:
        parts = list(self._frames())
        if not parts:
            return np.zeros((0, self.channels), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def blocks(self, frames_per_block: int, *, reuse: bool = False) -> Iterator[np.ndarray]:
        """Successive (frames, channels) float32 blocks of ``frames_per_block``, the last shorter.

        ``reuse`` is accepted as by :meth:`_SoundfileDecoder.blocks`; FFmpeg hands out new
        frames anyway, so the blocks are never overwritten.
        """
        pending: list[np.ndarray] = []
        pending_frames = 0
        for part in self._frames():
            pending.append(part)
            pending_frames += len(part)
            if pending_frames >= frames_per_block:
                joined = np.concatenate(pending)
                for start in range(0, len(joined) - frames_per_block + 1, frames_per_block):
                    yield joined[start : start + frames_per_block]
                rest = joined[len(joined) - len(joined) % frames_per_block :]
                pending, pending_frames = ([rest], len(rest)) if len(rest) else ([], 0)
        if pending_frames:
            yield np.concatenate(pending)

    def close(self) -> None:
        self.container.close()


def _error_text(error: Exception) -> str:
    """The library's own words for an error, without object reprs and file names."""
    text = getattr(error, "error_string", None) or getattr(error, "strerror", None)
    return str(text or error).strip().rstrip(".")


def _decode_failed(source: _Source, error: Exception) -> CorruptAudioError:
    return CorruptAudioError(
        f"{source.name}: damaged or truncated audio, decoding failed part way "
        f"({_error_text(error)})"
    )


def _open_decoder(source: _Source) -> _SoundfileDecoder | _FFmpegDecoder:
    """Open with libsndfile, or with FFmpeg when libsndfile does not know the format."""
    _check_not_truncated(source)
    try:
        sound_file = soundfile.SoundFile(source.target())
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as soundfile_error:
        first_error: Exception = soundfile_error
    else:
        # libsndfile 1.2 mis-decodes FFmpeg-written Ogg Opus when reading more than ~2000
        # frames at a time, and reports "unknown" lengths as 2**63 - 1 frames: let FFmpeg
        # decode both.
        if sound_file.subtype != "OPUS" and sound_file.frames < _UNKNOWN_FRAMES:
            return _checked_rate(_SoundfileDecoder(source, sound_file))
        first_error = RuntimeError(f"{sound_file.subtype} is left to FFmpeg")
        sound_file.close()
    try:
        container = av.open(source.target(), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as ffmpeg_error:
        detail = f"libsndfile: {_error_text(first_error)}; FFmpeg: {_error_text(ffmpeg_error)}"
        raise _not_audio(source, detail) from ffmpeg_error
    return _checked_rate(_FFmpegDecoder(source, container))


def _checked_rate(
    decoder: _SoundfileDecoder | _FFmpegDecoder,
) -> _SoundfileDecoder | _FFmpegDecoder:
    """The decoder, unless its file declares a sample rate outside FILE_SAMPLE_RATES."""
    lowest, highest = FILE_SAMPLE_RATES
    if not lowest <= decoder.sample_rate <= highest:
        decoder.close()
        raise CorruptAudioError(
            f"{decoder.source.name}: the header declares a sample rate of "
            f"{decoder.sample_rate} Hz; audio files must have {lowest}-{highest} Hz "
            "(damaged header?)"
        )
    return decoder


# ------------------------------------------------------------------------ entry points


def audio_info(source: str | Path | bytes | BinaryIO) -> AudioInfo:
    """Read a file's header: sample rate, channels, length, format; no audio is decoded.

    Parameters
    ----------
    source : path, bytes or binary file object
        The audio; its format is recognised by content, not by file name.

    Returns
    -------
    AudioInfo
        ``sample_rate`` (Hz), ``channels``, ``frames``, ``duration_seconds``, ``format``
        (e.g. ``"WAV"``, ``"FLAC"``, ``"MP4"``) and ``codec`` (e.g. ``"PCM_16"``, ``"AAC"``).

    Raises
    ------
    AudioError
        A subclass naming the file and the problem (empty, not audio, truncated, ...).
    """
    decoder = _open_decoder(_Source(source))
    decoder.close()
    return decoder.info


def load_audio(
    source: str | Path | bytes | BinaryIO,
    *,
    sample_rate: int | None = SAMPLE_RATE,
    channels: Sequence[int] | None = None,
    max_seconds: float | None = None,
) -> Audio:
    """Decode audio into float32 samples shaped (channels, frames), resampled.

    Parameters
    ----------
    source : path, bytes or binary file object
        The audio; its format is recognised by content, not by file name.
    sample_rate : int or None
        Output rate in Hz (default 16000); None keeps the file's own rate.
    channels : sequence of int or None
        Channels to keep, in this order (0 = left = customer on a stereo call);
        None keeps all channels, each separate.
    max_seconds : float or None
        Refuse audio longer than this many seconds, checked from the header before
        decoding where the header gives the length.

    Returns
    -------
    Audio
        ``samples`` float32 (channels, frames) in [-1, 1]; values beyond full scale (float
        files, resampling overshoot) are clipped.

    Raises
    ------
    AudioError
        ``EmptyAudioError``, ``NotAudioError``, ``CorruptAudioError``, ``AudioTooLongError``,
        ``InvalidSamplesError``, ``ChannelError`` or ``AudioNotFoundError``, each naming the
        file and the problem.
    """
    _check_sample_rate(sample_rate)
    _check_max_seconds(max_seconds)
    audio_source = _Source(source)
    decoder = _open_decoder(audio_source)
    try:
        selected = _check_channels(audio_source, channels, decoder.channels)
        _check_header_length(audio_source, decoder, max_seconds)
        if max_seconds is not None and decoder.frames is None:
            # No length in the header: decode in blocks and stop as soon as it is too long.
            limit = math.floor(max_seconds * decoder.sample_rate)
            parts = []
            decoded = 0
            for block in decoder.blocks(decoder.sample_rate * 10):
                decoded += len(block)
                if decoded > limit:
                    raise _too_long(
                        audio_source, f"more than {decoded / decoder.sample_rate:.1f}", max_seconds
                    )
                parts.append(block)
            frames = np.concatenate(parts) if parts else np.zeros((0, decoder.channels), np.float32)
        else:
            frames = decoder.read_all()
        _check_complete(audio_source, decoder, len(frames))
    finally:
        decoder.close()
    if selected != list(range(decoder.channels)):
        frames = frames[:, selected]
    if not decoder.integer_samples:
        _check_finite(audio_source, frames, 0, decoder.sample_rate)
    output_rate = decoder.sample_rate if sample_rate is None else sample_rate
    if output_rate != decoder.sample_rate:
        if not decoder.integer_samples:
            # Clipped anyway; unclipped, a finite float sample near 3.4e38 overflows the
            # resampler into inf and NaN.
            np.clip(frames, -1.0, 1.0, out=frames)
        frames = soxr.resample(
            np.ascontiguousarray(frames), decoder.sample_rate, output_rate, quality=RESAMPLE_QUALITY
        )
    # Copies at most once more: an hour of stereo 16 kHz audio is 460 MB of float32.
    samples = np.ascontiguousarray(frames.T, dtype=np.float32)
    np.clip(samples, -1.0, 1.0, out=samples)
    return Audio(
        samples=samples,
        sample_rate=output_rate,
        source=audio_source.name,
        original_sample_rate=decoder.sample_rate,
        original_channels=decoder.channels,
    )


def iter_audio_blocks(
    source: str | Path | bytes | BinaryIO,
    *,
    block_seconds: float = 60.0,
    sample_rate: int | None = SAMPLE_RATE,
    channels: Sequence[int] | None = None,
) -> Iterator[np.ndarray]:
    """Decode long audio block by block with bounded memory, resampled without seams.

    Parameters
    ----------
    source : path, bytes or binary file object
        The audio; its format is recognised by content, not by file name.
    block_seconds : float
        Length of each block in seconds at the output rate (default 60); the last block
        is shorter.
    sample_rate : int or None
        Output rate in Hz (default 16000); None keeps the file's own rate.
    channels : sequence of int or None
        Channels to keep, in this order; None keeps all.

    Yields
    ------
    numpy.ndarray
        float32 blocks shaped (channels, frames) in [-1, 1]; concatenated along the last
        axis they equal ``load_audio(...).samples``.

    Raises
    ------
    AudioError
        As :func:`load_audio`. The file is checked (existence, format, channels, declared
        length) before the first block; damage found part way is raised when reached.
    """
    _check_sample_rate(sample_rate)
    if not (isinstance(block_seconds, int | float) and block_seconds > 0):
        raise AudioError(
            f"block_seconds must be a positive number of seconds, got {block_seconds!r}"
        )
    audio_source = _Source(source)
    decoder = _open_decoder(audio_source)
    try:
        selected = _check_channels(audio_source, channels, decoder.channels)
        _check_header_length(audio_source, decoder, None)
    except AudioError:
        decoder.close()
        raise
    return _resampled_blocks(audio_source, decoder, selected, block_seconds, sample_rate)


def _resampled_blocks(
    audio_source: _Source,
    decoder: _SoundfileDecoder | _FFmpegDecoder,
    selected: list[int],
    block_seconds: float,
    sample_rate: int | None,
) -> Iterator[np.ndarray]:
    output_rate = decoder.sample_rate if sample_rate is None else sample_rate
    output_block = max(1, round(block_seconds * output_rate))
    input_block = max(1, math.ceil(block_seconds * decoder.sample_rate))
    stream = None
    if output_rate != decoder.sample_rate:
        stream = soxr.ResampleStream(
            decoder.sample_rate,
            output_rate,
            len(selected),
            dtype="float32",
            quality=RESAMPLE_QUALITY,
        )
    integer_samples = decoder.integer_samples
    # Decoded integers are finite and within [-1, 1]; only resampling can overshoot.
    blocks = _BlockAssembler(
        len(selected), output_block, clip=stream is not None or not integer_samples
    )
    all_channels = selected == list(range(decoder.channels))
    decoded = 0
    try:
        # Every decoded block is copied (resampled, or straight into an output block)
        # before the next is read, so the decoder may read them all into one buffer.
        for block in decoder.blocks(input_block, reuse=True):
            if not integer_samples:
                _check_finite(
                    audio_source,
                    block,
                    decoded,
                    decoder.sample_rate,
                    None if all_channels else selected,
                )
            decoded += len(block)
            if stream is None:
                yield from blocks.add(block, selected)
            else:
                # soxr wants the selected channels as one C-contiguous (frames, channels) array.
                chosen = np.ascontiguousarray(block if all_channels else block[:, selected])
                if not integer_samples:  # as in load_audio: no float overflow in soxr
                    np.clip(chosen, -1.0, 1.0, out=chosen)
                yield from blocks.add(stream.resample_chunk(chosen))
        _check_complete(audio_source, decoder, decoded)
        if stream is not None:
            yield from blocks.add(
                stream.resample_chunk(np.zeros((0, len(selected)), np.float32), last=True)
            )
        yield from blocks.finish()
    finally:
        decoder.close()


class _BlockAssembler:
    """Cuts (frames, channels) pieces of any length into (channels, frames) output blocks.

    Each sample is copied once, transposed (and clipped to [-1, 1] if asked), straight into
    a new float32 block of ``block_frames``: a yielded block is the caller's to keep.
    """

    def __init__(self, channels: int, block_frames: int, *, clip: bool) -> None:
        self.channels = channels
        self.block_frames = block_frames
        self.clip = clip
        self.block: np.ndarray | None = None
        self.filled = 0

    def add(self, frames: np.ndarray, columns: Sequence[int] | None = None) -> Iterator[np.ndarray]:
        """Copy ``frames`` (its ``columns``, default all, in order); yield each block filled."""
        columns = range(self.channels) if columns is None else columns
        start = 0
        while start < len(frames):
            if self.block is None:
                self.block = np.empty((self.channels, self.block_frames), np.float32)
                self.filled = 0
            take = min(self.block_frames - self.filled, len(frames) - start)
            target = self.block[:, self.filled : self.filled + take]
            piece = frames[start : start + take]
            # One channel at a time: a strided read and a contiguous write each, with no
            # temporary for the channel selection or the transpose.
            for row, column in enumerate(columns):
                if self.clip:
                    np.clip(piece[:, column], -1.0, 1.0, out=target[row])
                else:
                    np.copyto(target[row], piece[:, column])
            self.filled += take
            start += take
            if self.filled == self.block_frames:
                yield self.block
                self.block = None

    def finish(self) -> Iterator[np.ndarray]:
        """The last, shorter block, if any (a contiguous copy, not a view of a full one)."""
        if self.block is not None and self.filled:
            yield self.block[:, : self.filled].copy()
        self.block = None


# -------------------------------------------------------------------------- checks


def _check_sample_rate(sample_rate: int | None) -> None:
    if sample_rate is None:
        return
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise AudioError(f"sample_rate must be an integer in Hz or None, got {sample_rate!r}")
    if sample_rate <= 0:
        raise AudioError(f"sample_rate must be a positive number of Hz, got {sample_rate}")


def _check_max_seconds(max_seconds: float | None) -> None:
    if max_seconds is None:
        return
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, int | float):
        raise AudioError(f"max_seconds must be a number of seconds or None, got {max_seconds!r}")
    if not max_seconds > 0:
        raise AudioError(f"max_seconds must be positive, got {max_seconds}")


def _check_channels(source: _Source, channels: Sequence[int] | None, available: int) -> list[int]:
    if channels is None:
        return list(range(available))
    if isinstance(channels, str | bytes) or not isinstance(channels, Sequence):
        raise ChannelError(f"channels must be a list of channel numbers, got {channels!r}")
    if len(channels) == 0:
        raise ChannelError(f"{source.name}: channels is empty; pass None to keep all channels")
    selected = []
    for channel in channels:
        try:
            index = operator.index(channel)
        except TypeError:
            raise ChannelError(
                f"{source.name}: channel {channel!r} is not a channel number"
            ) from None
        if not 0 <= index < available:
            noun = "channel" if available == 1 else "channels"
            raise ChannelError(
                f"{source.name}: channel {index} does not exist; the file has {available} "
                f"{noun} (numbered 0..{available - 1})"
            )
        selected.append(index)
    return selected


def _too_long(source: _Source, seconds: str, max_seconds: float) -> AudioTooLongError:
    return AudioTooLongError(
        f"{source.name}: audio is {seconds} s long, over the limit of {max_seconds:g} s "
        f"(max_seconds)"
    )


def _check_header_length(
    source: _Source, decoder: _SoundfileDecoder | _FFmpegDecoder, max_seconds: float | None
) -> None:
    if decoder.frames == 0 and decoder.declared_frames is not None:
        raise EmptyAudioError(
            f"{source.name}: holds no audio ({decoder.info.format} header with 0 frames)"
        )
    if max_seconds is not None and decoder.frames:
        seconds = decoder.frames / decoder.sample_rate
        if seconds > max_seconds:
            raise _too_long(source, f"{seconds:.1f}", max_seconds)


def _check_complete(
    source: _Source, decoder: _SoundfileDecoder | _FFmpegDecoder, decoded_frames: int
) -> None:
    if decoded_frames == 0:
        raise EmptyAudioError(f"{source.name}: holds no audio (0 frames could be decoded)")
    declared = decoder.declared_frames
    if declared is not None and decoded_frames < declared - decoder.frame_tolerance:
        raise CorruptAudioError(
            f"{source.name}: truncated or damaged audio: the header declares {declared} "
            f"frames but only {decoded_frames} could be decoded"
        )


def _check_finite(
    source: _Source,
    frames: np.ndarray,
    offset: int,
    sample_rate: int,
    columns: Sequence[int] | None = None,
) -> None:
    """Refuse NaN/Inf samples: resampling and features would smear them everywhere.

    Only ``columns`` (default all) of the (frames, channels) array count; channel numbers
    in the message are positions among them.
    """
    # One pass and no temporaries: a sum is finite only if every sample is. (Huge finite
    # samples can overflow it too, and NaN in a column not asked for spoils it: both are
    # sorted out by the exact check below.)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, overflow: expected here
        total = np.add.reduce(frames, axis=None)
    if math.isfinite(total):
        return
    if columns is not None:
        frames = frames[:, columns]
    bad = ~np.isfinite(frames)
    if bad.any():
        frame, channel = np.argwhere(bad)[0]
        raise InvalidSamplesError(
            f"{source.name}: {int(bad.sum())} samples are NaN or infinite "
            f"(first at {(offset + frame) / sample_rate:.3f} s, channel {channel})"
        )


# ---------------------------------------------------------------------- resampling


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample along the last axis with soxr (high quality, linear phase).

    Parameters
    ----------
    samples : numpy.ndarray
        Audio with time on the last axis, e.g. (frames,) or (channels, frames).
    orig_rate, target_rate : int
        Sample rates in Hz.

    Returns
    -------
    numpy.ndarray
        float32, same leading shape, ``round(frames * target_rate / orig_rate)`` frames.
    """
    for name, rate in (("orig_rate", orig_rate), ("target_rate", target_rate)):
        _check_sample_rate(rate)
        if rate is None:
            raise AudioError(f"{name} must be an integer in Hz, got None")
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 0:
        raise AudioError("resample needs an array with time on the last axis, got a scalar")
    if orig_rate == target_rate:
        return array.copy()
    leading = array.shape[:-1]
    # soxr wants (frames, channels): one column per signal.
    columns = np.ascontiguousarray(array.reshape(-1, array.shape[-1]).T)
    resampled = soxr.resample(columns, orig_rate, target_rate, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(resampled.T).reshape(*leading, -1)


# ------------------------------------------------------------------ telephone (G.711)


def _check_codec(codec: str) -> str:
    if codec not in G711_CODECS:
        raise AudioError(f"codec must be one of {', '.join(G711_CODECS)}, got {codec!r}")
    return codec


@cache
def _g711_decode_table(codec: str) -> np.ndarray:
    """The 256 linear 16-bit values of ITU-T G.711 code words (as in Sun's g711.c)."""
    codes = np.arange(256, dtype=np.int32)
    if codec == "mulaw":
        inverted = ~codes & 0xFF
        magnitude = (((inverted & 0x0F) << 3) + 0x84) << ((inverted & 0x70) >> 4)
        return np.where(inverted & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)
    toggled = codes ^ 0x55
    segment = (toggled & 0x70) >> 4
    mantissa = (toggled & 0x0F) << 4
    magnitude = np.where(
        segment == 0,
        mantissa + 8,
        (mantissa + 0x108) << np.maximum(segment - 1, 0),
    )
    return np.where(toggled & 0x80, magnitude, -magnitude).astype(np.int16)


@cache
def _g711_encode_table(codec: str) -> np.ndarray:
    """Code word for every 16-bit linear value, indexed by ``value + 32768``."""
    linear = np.arange(-32768, 32768, dtype=np.int32)
    if codec == "mulaw":
        value = linear >> 2  # G.711 mu-law works on 14-bit magnitudes
        mask = np.where(value < 0, 0x7F, 0xFF)
        value = np.minimum(np.abs(value), 8159) + 0x21
        segment_ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
        segment = np.searchsorted(segment_ends, value)
        code = np.where(segment >= 8, 0x7F, (segment << 4) | ((value >> (segment + 1)) & 0x0F))
        return ((code ^ mask) & 0xFF).astype(np.uint8)
    value = linear >> 3  # A-law works on 13-bit magnitudes
    mask = np.where(value >= 0, 0xD5, 0x55)
    value = np.where(value >= 0, value, -value - 1)
    segment_ends = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    segment = np.searchsorted(segment_ends, value)
    code = np.where(
        segment >= 8,
        0x7F,
        (segment << 4) | (np.where(segment < 2, value >> 1, value >> segment) & 0x0F),
    )
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def encode_telephone(samples: np.ndarray, sample_rate: int, codec: str = "mulaw") -> bytes:
    """Encode audio as 8 kHz G.711 telephone bytes (mu-law or A-law), as a phone line would.

    Parameters
    ----------
    samples : numpy.ndarray
        float audio in [-1, 1], shaped (frames,) or (channels, frames); values beyond full
        scale are clipped.
    sample_rate : int
        Rate of ``samples`` in Hz; resampled to 8000 Hz first when different.
    codec : {"mulaw", "alaw"}
        G.711 companding law: mu-law (North America, Japan) or A-law (Europe).

    Returns
    -------
    bytes
        One byte per sample at 8000 Hz, channels interleaved frame by frame (as in a WAV).
    """
    _check_codec(codec)
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim not in (1, 2):
        raise AudioError(
            f"samples must be (frames,) or (channels, frames), got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise InvalidSamplesError("samples to encode contain NaN or infinite values")
    array = resample(array, sample_rate, TELEPHONE_SAMPLE_RATE)
    linear = np.clip(np.round(array * 32768.0), -32768, 32767).astype(np.int32)
    interleaved = linear.T.reshape(-1) if linear.ndim == 2 else linear
    return _g711_encode_table(codec)[interleaved + 32768].tobytes()


def decode_g711(data: bytes, codec: str = "mulaw", *, channels: int = 1) -> np.ndarray:
    """Decode raw G.711 bytes (mu-law or A-law) to float32 in [-1, 1) at their own rate.

    Parameters
    ----------
    data : bytes
        One code word per sample (8 kHz on a phone line), channels interleaved.
    codec : {"mulaw", "alaw"}
        G.711 companding law.
    channels : int
        Number of interleaved channels (default 1).

    Returns
    -------
    numpy.ndarray
        float32 (frames,) for one channel, (channels, frames) for more; the ITU-T linear
        values divided by 32768, exactly as libsndfile decodes ULAW/ALAW WAV files.
    """
    _check_codec(codec)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AudioError(f"G.711 data must be bytes, got {type(data).__name__}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise AudioError(f"channels must be a positive integer, got {channels!r}")
    codes = np.frombuffer(data, dtype=np.uint8)
    if len(codes) % channels:
        raise CorruptAudioError(
            f"<bytes>: {len(codes)} G.711 bytes do not split into {channels} channels"
        )
    decoded = _g711_decode_table(codec)[codes].astype(np.float32) / np.float32(32768.0)
    if channels == 1:
        return decoded
    return np.ascontiguousarray(decoded.reshape(-1, channels).T)
