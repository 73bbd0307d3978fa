"""Find the calls of a batch (a folder, a glob or a manifest CSV) and name each by its content.

A call's identity is the sha256 of its bytes, so a renamed or copied file is
the same call, and a rerun recognises the calls it has already analysed.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from callmood.analysis import AnalysisOptions
from callmood.audio import _looks_like_audio_container
from callmood.batch.options import BatchError
from callmood.call_metadata import METADATA_FIELDS, CallMetadata
from callmood.errors import CallmoodError

#: File name endings of audio containers. A file with one of these is taken as a call even
#: when its content is broken, so that it is reported in the errors table, not silently skipped.
AUDIO_SUFFIXES = frozenset(
    ".wav .wave .flac .mp3 .ogg .oga .opus .m4a .mp4 .aac .wma .webm .mka .aif .aiff .aifc "
    ".au .snd .caf .amr .gsm .vox .raw .ulaw .alaw".split()
)
MANIFEST_COLUMNS = ("path", "customer_channel", "agent_channel")
#: Columns of a metadata sidecar CSV (`--metadata`): the file, then what is known of its call.
SIDECAR_COLUMNS = ("file", *METADATA_FIELDS)
_GLOB_CHARACTERS = frozenset("*?[")
_HASH_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class CallFile:
    """One input of a batch: a file and, from a manifest, its own channel mapping."""

    path: Path
    channels: dict[str, int] | None = None


def read_metadata_sidecar(sidecar: Path) -> dict[Path, CallMetadata]:
    """Read a sidecar CSV of call metadata: a ``file`` column (relative paths from the
    sidecar's folder) and any of ``agent``, ``queue``, ``external_call_id``, ``started_at``.

    Returns
    -------
    dict
        The resolved path of each file -> its metadata.

    Raises
    ------
    BatchError
        Naming the sidecar and line: no ``file`` column, an unknown column, a file named
        twice or that does not exist (a typo would silently lose its metadata), a bad value.
    """
    found: dict[Path, CallMetadata] = {}
    try:
        with open(sidecar, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            unknown = [c for c in columns if c not in SIDECAR_COLUMNS]
            if "file" not in columns or unknown:
                raise BatchError(
                    f"metadata {sidecar}: columns must be 'file' and any of "
                    f"{', '.join(METADATA_FIELDS)} (found: {', '.join(columns) or 'none'})"
                )
            reader.fieldnames = columns
            for line, row in enumerate(reader, start=2):
                raw_file = (row.get("file") or "").strip()
                if not raw_file:
                    if any(
                        (value or "").strip() for value in row.values() if isinstance(value, str)
                    ):
                        raise BatchError(f"metadata {sidecar}, line {line}: empty file")
                    continue  # a blank line
                path = Path(raw_file).expanduser()
                path = (path if path.is_absolute() else sidecar.parent / path).resolve()
                if not path.is_file():
                    raise BatchError(f"metadata {sidecar}, line {line}: {raw_file}: no such file")
                if path in found:
                    raise BatchError(f"metadata {sidecar}, line {line}: {raw_file} named twice")
                try:
                    found[path] = CallMetadata.parse(row)
                except CallmoodError as error:
                    raise BatchError(f"metadata {sidecar}, line {line}: {error}") from None
    except UnicodeDecodeError as error:
        raise BatchError(f"metadata {sidecar}: not a UTF-8 text CSV ({error.reason})") from None
    except csv.Error as error:
        raise BatchError(f"metadata {sidecar}: not a valid CSV ({error})") from None
    except OSError as error:
        raise BatchError(f"metadata {sidecar}: cannot read ({error.strerror or error})") from None
    return found


def find_calls(source: str | Path, *, exclude: Path | None = None) -> list[CallFile]:
    """List the calls of ``source`` in a stable order.

    Parameters
    ----------
    source
        A folder (searched recursively; files are recognised as audio by their
        content or by an audio file name ending), a glob pattern (``calls/**/*.wav``,
        every matching file is a call), a manifest CSV (a ``path`` column, relative
        paths from the manifest's folder, optional ``customer_channel`` and
        ``agent_channel`` columns) or a single audio file.
    exclude
        A folder to leave out of a folder search (the batch's own output).

    Raises
    ------
    BatchError
        When the source does not exist, the manifest is malformed, or nothing is found.
    """
    text = str(source)
    path = Path(source)
    if path.is_dir():
        calls = [CallFile(p) for p in _walk_audio_files(path, exclude)]
        where = f"folder {text}"
    elif path.is_file() and path.suffix.lower() == ".csv":
        calls = read_call_manifest(path)
        where = f"manifest {text}"
    elif path.is_file():
        calls = [CallFile(path)]
        where = text
    elif _GLOB_CHARACTERS & set(text):
        matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
        calls = [CallFile(Path(m)) for m in matches if Path(m).is_file()]
        where = f"glob {text!r}"
    else:
        raise BatchError(f"batch source {text}: no such file, folder or glob match")
    if not calls:
        raise BatchError(f"{where}: no audio files found")
    return calls


def read_call_manifest(manifest: Path) -> list[CallFile]:
    """Read a manifest CSV of calls: ``path`` plus optional per-call channel columns.

    Raises
    ------
    BatchError
        Naming the manifest and line when a column or value is wrong.
    """
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            if "path" not in columns:
                raise BatchError(
                    f"manifest {manifest}: no 'path' column (found: {', '.join(columns) or 'none'})"
                )
            reader.fieldnames = columns
            calls = [_manifest_row(manifest, line, row) for line, row in enumerate(reader, start=2)]
    except UnicodeDecodeError as error:
        raise BatchError(f"manifest {manifest}: not a UTF-8 text CSV ({error.reason})") from None
    except csv.Error as error:
        raise BatchError(f"manifest {manifest}: not a valid CSV ({error})") from None
    return [call for call in calls if call is not None]


def _manifest_row(manifest: Path, line: int, row: dict[str, str | None]) -> CallFile | None:
    raw_path = (row.get("path") or "").strip()
    if not raw_path:
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            return None  # a blank line
        raise BatchError(f"manifest {manifest}, line {line}: empty path")
    path = Path(raw_path).expanduser()
    if not path.is_absolute():
        path = manifest.parent / path
    channels: dict[str, int] = {}
    for speaker in ("customer", "agent"):
        value = (row.get(f"{speaker}_channel") or "").strip()
        if not value:
            continue
        if not value.isdigit():
            raise BatchError(
                f"manifest {manifest}, line {line}: {speaker}_channel must be a channel "
                f"index (0, 1, ...), got {value!r}"
            )
        channels[speaker] = int(value)
    if channels:
        try:
            AnalysisOptions(channels=channels)  # the one place that knows a valid mapping
        except CallmoodError as error:
            raise BatchError(f"manifest {manifest}, line {line}: {error}") from None
    return CallFile(path, channels or None)


def _walk_audio_files(folder: Path, exclude: Path | None) -> Iterator[Path]:
    excluded = exclude.resolve() if exclude is not None else None
    for directory, subdirectories, files in os.walk(folder):
        here = Path(directory)
        # Hidden folders (.git, .cache) and the batch's own output are never calls.
        subdirectories[:] = sorted(
            d
            for d in subdirectories
            if not d.startswith(".") and (excluded is None or (here / d).resolve() != excluded)
        )
        for name in sorted(files):
            path = here / name
            if not name.startswith(".") and path.is_file() and looks_like_audio(path):
                yield path


def looks_like_audio(path: Path) -> bool:
    """True when ``path`` has an audio file name ending or starts like an audio container."""
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    return _looks_like_audio_container(head)


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, hex (the call's identity).

    Raises
    ------
    OSError
        When the file cannot be read (the caller records it as an error).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()
