"""The manifest: one CSV row per labelled clip, the table that joins corpora to training.

Reading validates the whole file and reports every problem at once (missing files,
unknown labels, duplicate ids, bad numbers), so a user fixes a manifest in one pass.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from callmood.errors import CallmoodError
from callmood.labels import EMOTIONS, label_set, order_labels, to_label_set

if TYPE_CHECKING:
    import pandas

# Problems listed in one error message; the rest are counted.
_MAX_LISTED_PROBLEMS = 50


class ManifestError(CallmoodError):
    """A manifest that cannot be read or written; the message lists every problem found."""


@dataclass
class ManifestRow:
    """One labelled clip.

    Attributes
    ----------
    id : str
        Unique across the manifest, e.g. ``"ravdess:03-01-05-01-02-01-12"``.
    corpus : str
        Corpus name as in :data:`callmood.corpora.CORPORA`.
    path : str
        Audio file; absolute after :func:`read_manifest`.
    speaker : str
        Globally unique speaker, e.g. ``"ravdess:12"``.
    gender : str or None
        ``"female"``, ``"male"`` or ``None`` when unknown.
    group : str
        Unit of speaker-independent splits: the speaker, or the IEMOCAP session.
    label : str
        Canonical emotion name (:data:`callmood.labels.EMOTIONS`).
    original_label : str
        The corpus's own code, e.g. ``"exc"`` or ``"05"``.
    valence, arousal, dominance : float or None
        Dimensional ratings where the corpus has them (IEMOCAP: 1-5 scale).
    duration_seconds : float
        Length of the clip in seconds.
    sample_rate : int
        Sample rate of the file on disk, in Hz.
    language : str
        ISO 639-1 code (``"en"``, ``"de"``), ``"und"`` when unknown.
    """

    id: str
    corpus: str
    path: str
    speaker: str
    gender: str | None
    group: str
    label: str
    original_label: str
    valence: float | None
    arousal: float | None
    dominance: float | None
    duration_seconds: float
    sample_rate: int
    language: str


COLUMNS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(ManifestRow))
_REQUIRED_TEXT = ("id", "corpus", "path", "speaker", "group", "label", "original_label")
_OPTIONAL_FLOATS = ("valence", "arousal", "dominance")
_GENDERS = ("female", "male")


def write_manifest(
    rows: Iterable[ManifestRow],
    path: str | Path,
    *,
    one_hot: bool = False,
    labels: Sequence[str] | None = None,
) -> None:
    """Write rows to a CSV manifest, atomically (a crash never leaves half a file).

    Audio paths under the manifest's folder are written relative to it, so a folder holding
    the manifest and its audio can be moved as a whole; other paths are written absolute.

    Parameters
    ----------
    rows : iterable of ManifestRow
        The clips; ids must be unique.
    path : str or Path
        Output CSV file; its folder is created if missing.
    one_hot : bool
        Add one 0/1 column per label after the regular columns (the aggregation format the
        original project trained from).
    labels : sequence of str, optional
        The one-hot columns, in order; default: the labels present, in canonical order.

    Raises
    ------
    ManifestError
        On duplicate ids, or when the file cannot be written.
    """
    rows = list(rows)
    path = Path(path)
    id_counts = Counter(row.id for row in rows)
    duplicates = sorted(clip_id for clip_id, count in id_counts.items() if count > 1)
    if duplicates:
        shown = ", ".join(duplicates[:10])
        raise ManifestError(f"{path}: {len(duplicates)} duplicate ids, e.g. {shown}")
    one_hot_labels = list(labels) if labels is not None else order_labels(r.label for r in rows)
    header = list(COLUMNS) + (one_hot_labels if one_hot else [])
    folder = path.parent.resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            "w", newline="", encoding="utf-8", dir=folder, prefix=f".{path.name}.", delete=False
        )
    except OSError as error:
        raise ManifestError(f"cannot write manifest {path}: {error.strerror or error}") from None
    try:
        with handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                values = [_format_value(getattr(row, column)) for column in COLUMNS]
                values[COLUMNS.index("path")] = _portable_path(row.path, folder)
                if one_hot:
                    values += ["1" if row.label == label else "0" for label in one_hot_labels]
                writer.writerow(values)
        os.chmod(handle.name, 0o644)  # temporary files are private; a manifest is shared
        os.replace(handle.name, path)
    except OSError as error:
        Path(handle.name).unlink(missing_ok=True)
        raise ManifestError(f"cannot write manifest {path}: {error.strerror or error}") from None


def read_manifest(path: str | Path, *, check_files: bool = True) -> list[ManifestRow]:
    """Read and validate a CSV manifest.

    Relative audio paths are resolved against the manifest's folder. Extra columns (such as
    one-hot label columns) are ignored.

    Parameters
    ----------
    path : str or Path
        The CSV file written by :func:`write_manifest` (or by hand, with the same columns).
    check_files : bool
        Also check that every audio file exists.

    Returns
    -------
    list of ManifestRow
        With absolute ``path`` values.

    Raises
    ------
    ManifestError
        Listing every problem found: missing columns, empty fields, duplicate ids, unknown
        labels, bad numbers and (with ``check_files``) missing audio files, each with its line.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} not found")
    folder = path.resolve().parent
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
            header = list(records[0].keys()) if records else _read_header(path)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ManifestError(f"manifest {path} is not a UTF-8 CSV file: {error}") from None
    missing_columns = [column for column in COLUMNS if column not in header]
    if missing_columns:
        raise ManifestError(
            f"manifest {path} lacks columns {', '.join(missing_columns)} "
            f"(expected: {', '.join(COLUMNS)})"
        )
    rows: list[ManifestRow] = []
    problems: list[str] = []
    first_line_of_id: dict[str, int] = {}
    for line, record in enumerate(records, start=2):  # line 1 is the header
        row_problems: list[str] = []
        row = _parse_record(record, folder, row_problems)
        # Identity and file checks run on the raw fields, so one pass reports them too.
        clip_id = (record.get("id") or "").strip()
        if clip_id in first_line_of_id:
            first = first_line_of_id[clip_id]
            row_problems.append(f"duplicate id {clip_id!r} (first on line {first})")
        elif clip_id:
            first_line_of_id[clip_id] = line
        audio_path = _resolve(record.get("path") or "", folder)
        if check_files and audio_path is not None and not _is_file(audio_path):
            row_problems.append(f"audio file {audio_path} not found")
        problems += [f"line {line}: {problem}" for problem in row_problems]
        if row is not None and not row_problems:
            rows.append(row)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED_PROBLEMS])
        more = len(problems) - _MAX_LISTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise ManifestError(f"manifest {path} has {len(problems)} problems:\n  {listed}{tail}")
    return rows


def apply_label_set(rows: Iterable[ManifestRow], set_name: str) -> list[ManifestRow]:
    """Map each row's label into a named label set and drop the rows the set leaves out.

    ``original_label`` keeps the corpus's own code, so the mapping stays traceable.

    Raises
    ------
    LabelError
        When `set_name` is not a known label set.
    """
    label_set(set_name)  # an unknown set is an error even for no rows
    mapped = []
    for row in rows:
        label = to_label_set(row.label, set_name)
        if label is not None:
            mapped.append(dataclasses.replace(row, label=label))
    return mapped


def rows_to_dataframe(rows: Iterable[ManifestRow]) -> pandas.DataFrame:
    """Return the rows as a pandas DataFrame with the manifest's columns."""
    import pandas

    return pandas.DataFrame([dataclasses.asdict(row) for row in rows], columns=list(COLUMNS))


def _read_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _parse_record(
    record: dict[str, str | None], folder: Path, problems: list[str]
) -> ManifestRow | None:
    """Turn one CSV record into a row, appending each problem found to `problems`."""
    values = {column: (record.get(column) or "").strip() for column in COLUMNS}
    for column in _REQUIRED_TEXT + ("language",):
        if not values[column]:
            problems.append(f"empty {column}")
    label = values["label"]
    if label and label not in EMOTIONS:
        problems.append(f"unknown label {label!r} (allowed: {', '.join(EMOTIONS)})")
    gender = values["gender"] or None
    if gender is not None and gender not in _GENDERS:
        problems.append(f"gender {gender!r} is not one of {', '.join(_GENDERS)} or empty")
    floats: dict[str, float | None] = {}
    for column in _OPTIONAL_FLOATS:
        floats[column] = _parse_float(values[column], column, problems, optional=True)
    duration = _parse_float(values["duration_seconds"], "duration_seconds", problems)
    if duration is not None and duration <= 0:
        problems.append(f"duration_seconds must be positive, got {values['duration_seconds']}")
    sample_rate = _parse_int(values["sample_rate"], "sample_rate", problems)
    if sample_rate is not None and sample_rate <= 0:
        problems.append(f"sample_rate must be positive, got {values['sample_rate']}")
    if problems:
        return None
    return ManifestRow(
        id=values["id"],
        corpus=values["corpus"],
        path=str(_resolve(values["path"], folder)),
        speaker=values["speaker"],
        gender=gender,
        group=values["group"],
        label=label,
        original_label=values["original_label"],
        valence=floats["valence"],
        arousal=floats["arousal"],
        dominance=floats["dominance"],
        duration_seconds=float(duration),  # type: ignore[arg-type]
        sample_rate=int(sample_rate),  # type: ignore[arg-type]
        language=values["language"],
    )


def _resolve(audio_path: str, manifest_folder: Path) -> Path | None:
    """The audio path as written, made absolute against the manifest's folder (None if empty)."""
    if not audio_path.strip():
        return None
    path = Path(audio_path.strip())
    return path if path.is_absolute() else manifest_folder / path


def _is_file(path: Path) -> bool:
    # Path.is_file raises for a name too long for the file system: no such file either.
    try:
        return path.is_file()
    except OSError:
        return False


def _parse_float(
    text: str, column: str, problems: list[str], *, optional: bool = False
) -> float | None:
    if not text:
        if not optional:
            problems.append(f"empty {column}")
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(f"{column} {text!r} is not a number")
        return None
    if not math.isfinite(value):
        problems.append(f"{column} {text!r} is not a finite number")
        return None
    return value


def _parse_int(text: str, column: str, problems: list[str]) -> int | None:
    if not text:
        problems.append(f"empty {column}")
        return None
    try:
        return int(text)
    except ValueError:
        problems.append(f"{column} {text!r} is not a whole number")
        return None


def _format_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def _portable_path(audio_path: str, manifest_folder: Path) -> str:
    resolved = Path(audio_path).resolve()
    if resolved.is_relative_to(manifest_folder):
        return resolved.relative_to(manifest_folder).as_posix()
    return str(resolved)
