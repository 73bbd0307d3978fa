"""Your own recordings: a folder with one sub-folder per emotion, or a CSV listing the clips.

Folder layout: ``<root>/<label>/<clip>`` or ``<root>/<label>/<speaker>/<clip>``, any audio
format. CSV layout: columns ``path`` and ``label``, optional ``speaker``, ``gender`` and
``language``; relative paths are resolved against the CSV's folder. Labels are callmood's
emotion names (:data:`callmood.labels.EMOTIONS`, common spellings such as "anger" accepted).
Without speakers every clip counts as one unknown speaker, so no speaker-independent split
is possible: give speakers when you can.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from callmood.corpora._common import (
    Candidate,
    CorpusError,
    ProgressCallback,
    corpus_folder,
    iter_files,
    no_clips_error,
    rows_from_candidates,
    stem_of,
    warn,
)
from callmood.errors import CallmoodError
from callmood.labels import EMOTIONS, canonical_label
from callmood.manifest import ManifestRow

CORPUS = "custom"
TITLE = "custom recordings"
UNKNOWN_SPEAKER = "unknown"
# ISO 639-2 "undetermined", for clips whose language is not given.
UNDETERMINED_LANGUAGE = "und"
CSV_COLUMNS = ("path", "label", "speaker", "gender", "language")
_GENDERS = {"f": "female", "female": "female", "m": "male", "male": "male"}


def prepare_custom(
    corpus_dir: str | Path,
    *,
    language: str = UNDETERMINED_LANGUAGE,
    progress: ProgressCallback | None = None,
) -> list[ManifestRow]:
    """Read your own labelled recordings from a label-per-folder tree or a CSV file.

    Parameters
    ----------
    corpus_dir : str or Path
        The root folder (one sub-folder per label) or the CSV file.
    language : str
        Language code for clips that do not state one (default ``"und"``, undetermined).
    progress : callable, optional
        Called as ``progress(done, total)`` while audio files are read.

    Returns
    -------
    list of ManifestRow
        Ids ``"custom:<root name>/<relative path without extension>"``, speakers
        ``"custom:<speaker>"`` (``"custom:unknown"`` when not given), group = speaker.

    Raises
    ------
    CorpusError
        When a label is unknown (the message lists the allowed labels), the CSV is malformed,
        or no audio is found.
    """
    source = Path(corpus_dir).expanduser()
    if source.is_file():
        candidates = _candidates_from_csv(source.resolve(), language)
        root = source.resolve().parent
    else:
        root = corpus_folder(source, TITLE)
        candidates = _candidates_from_folders(root, language)
    rows = rows_from_candidates(
        candidates, corpus=CORPUS, title=TITLE, progress=progress, describe=_describe
    )
    if not rows:
        raise no_clips_error(TITLE, root, "<label>/<clip> audio files or a CSV with path,label")
    return rows


def _describe(candidate: Candidate) -> dict[str, Any]:
    """A clip's speaker (``unknown`` when not given), gender, labels and language."""
    fields = candidate.fields
    return {
        "speaker": f"{CORPUS}:{fields['speaker'] or UNKNOWN_SPEAKER}",
        "gender": fields["gender"] or None,
        "label": fields["label"],
        "original_label": fields["original_label"],
        "language": fields["language"],
    }


def _candidates_from_folders(root: Path, language: str) -> list[Candidate]:
    candidates = []
    unknown_labels = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            label = canonical_label(label_dir.name)
        except CallmoodError:
            unknown_labels.append(label_dir.name)
            continue
        for path in iter_files(label_dir):
            relative = path.relative_to(root)
            # <label>/<speaker>/<clip>: the folder under the label names the speaker.
            speaker = relative.parts[1] if len(relative.parts) >= 3 else ""
            fields = {
                "label": label,
                "original_label": label_dir.name,
                "speaker": speaker,
                "gender": "",
                "language": language,
            }
            candidates.append(Candidate(_clip_id(root, relative), path, fields))
    if unknown_labels:
        raise CorpusError(
            f"{TITLE}: folders {', '.join(repr(n) for n in unknown_labels)} under {root} are not "
            f"emotion labels; allowed labels: {', '.join(EMOTIONS)}"
        )
    return candidates


def _candidates_from_csv(csv_path: Path, language: str) -> list[Candidate]:
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip().lower() for name in reader.fieldnames or []]
            records = [
                {key.strip().lower(): (value or "").strip() for key, value in record.items() if key}
                for record in reader
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CorpusError(f"{TITLE}: cannot read {csv_path} as a CSV file: {error}") from None
    if not {"path", "label"} <= set(header):
        raise CorpusError(
            f"{TITLE}: {csv_path} needs the columns path and label "
            f"(optional: speaker, gender, language); found: {', '.join(header) or 'none'}"
        )
    base = csv_path.parent
    problems = []
    missing = []
    candidates = []
    for line, record in enumerate(records, start=2):
        try:
            label = canonical_label(record["label"])
        except CallmoodError:
            problems.append(f"line {line}: unknown label {record['label']!r}")
            continue
        gender = record.get("gender", "")
        if gender and gender.lower() not in _GENDERS:
            problems.append(f"line {line}: gender {gender!r} is not female/male")
            continue
        if not record["path"]:
            problems.append(f"line {line}: empty path")
            continue
        path = Path(record["path"]).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            missing.append(str(path))
            continue
        fields = {
            "label": label,
            "original_label": record["label"],
            "speaker": record.get("speaker", ""),
            "gender": _GENDERS.get(gender.lower(), ""),
            "language": record.get("language") or language,
        }
        relative = path.relative_to(base) if path.is_relative_to(base) else Path(path.name)
        candidates.append(Candidate(_clip_id(base, relative), path, fields))
    if problems:
        listed = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CorpusError(
            f"{TITLE}: {csv_path} has {len(problems)} bad rows (allowed labels: "
            f"{', '.join(EMOTIONS)}):\n  {listed}{more}"
        )
    if missing:
        warn(TITLE, f"{len(missing)} files listed in {csv_path.name} do not exist", missing)
    return candidates


def _clip_id(root: Path, relative: Path) -> str:
    return f"{CORPUS}:{root.name}/{relative.with_name(stem_of(relative)).as_posix()}"
