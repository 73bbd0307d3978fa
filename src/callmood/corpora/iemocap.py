"""IEMOCAP, the Interactive Emotional Dyadic Motion Capture database (speech part).

10 actors (5 female, 5 male) in 5 sessions of improvised and scripted dyadic dialogs,
American English, about 12 hours: 10,039 utterances, each with a categorical label
agreed by the annotators (neu, hap, exc, sad, ang, fru, sur, fea, dis, oth, or xxx when
they did not agree) and valence/activation/dominance ratings on a 1-5 scale. The standard
4-class protocol (neutral, happy + excited, sad, angry) keeps 5,531 utterances.
Source: https://sail.usc.edu/iemocap/ (on request; ``IEMOCAP_full_release``).
License: research use under the USC SAIL release agreement.
Citation: Busso et al. (2008), Language Resources and Evaluation 42(4): 335-359.

Two layouts are read:

- the official release: ``SessionN/dialog/EmoEvaluation/<dialog>.txt`` with lines like
  ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`` and
  audio in ``SessionN/sentences/wav/<dialog>/<utterance>.wav``;
- the widely shared CSV ``iemocap_full_dataset.csv`` (columns session, method, gender,
  emotion, n_annotators, agreement, path; paths relative to the CSV), which has no
  dimensional ratings.

Speakers are named by session and the letter after the utterance's last underscore:
``Ses01F_impro01_M000`` is spoken by the male actor of session 1 (``iemocap:Ses01M``),
whichever actor's recording the dialog is named after. Splits are by session
(``group`` = ``Session1`` ... ``Session5``), the unit of the standard 5-fold protocol.
"""

from __future__ import annotations

import csv
import re
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
from callmood.labels import CORPUS_LABEL_MAPS, from_corpus_label
from callmood.manifest import ManifestRow

CORPUS = "iemocap"
TITLE = "IEMOCAP"
LANGUAGE = "en"
NUM_SESSIONS = 5
RELEASE_FOLDER = "IEMOCAP_full_release"
CSV_FILE = "iemocap_full_dataset.csv"
CSV_COLUMNS = ("session", "method", "gender", "emotion", "n_annotators", "agreement", "path")
_GENDERS = {"F": "female", "M": "male"}

# Ses01F_impro01_M000, Ses01F_script01_1_F012, Ses05M_script02_2_M045 ...
_UTTERANCE = re.compile(r"^Ses(?P<session>\d\d)[FM]_(?P<dialog_rest>.+)_(?P<speaker>[FM])\d{3}$")
# [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]
_EVALUATION_LINE = re.compile(
    r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(?P<utterance>Ses\S+)\s+(?P<code>[a-z]{3})\s+"
    r"\[\s*(?P<valence>[-\d.]+)\s*,\s*(?P<arousal>[-\d.]+)\s*,\s*(?P<dominance>[-\d.]+)\s*\]"
)


def prepare_iemocap(
    corpus_dir: str | Path, *, progress: ProgressCallback | None = None
) -> list[ManifestRow]:
    """Read IEMOCAP's labels and find each labelled utterance's audio.

    All categorical labels are kept (``xxx`` becomes ``unknown``, ``oth`` ``other``);
    choose the classes later with a label set (``iemocap4``).

    Parameters
    ----------
    corpus_dir : str or Path
        ``IEMOCAP_full_release`` (or its parent), or a folder holding
        ``iemocap_full_dataset.csv``, or that CSV file itself. The official label files are
        preferred when both are present, as only they carry valence/arousal/dominance.
    progress : callable, optional
        Called as ``progress(done, total)`` while audio files are read.

    Returns
    -------
    list of ManifestRow
        One row per utterance with audio; speaker ``"iemocap:Ses01F"``, group ``"Session1"``.

    Raises
    ------
    CorpusError
        When the folder holds neither layout, a label file is malformed, or no labelled
        utterance has audio. Utterances whose audio is missing are skipped with a warning.
    """
    corpus_path = Path(corpus_dir).expanduser()
    if corpus_path.is_file():
        return _prepare_from_csv(corpus_path, progress)
    folder = corpus_folder(corpus_path, TITLE)
    # The release folder itself, or its parent (where the shared CSV usually sits).
    roots = [folder / RELEASE_FOLDER, folder] if (folder / RELEASE_FOLDER).is_dir() else [folder]
    for root in roots:
        evaluation_files = _evaluation_files(root)
        if evaluation_files:
            return _prepare_from_release(root, evaluation_files, progress)
    for root in roots:
        if (root / CSV_FILE).is_file():
            return _prepare_from_csv(root / CSV_FILE, progress)
    raise CorpusError(
        f"{TITLE}: found neither SessionN/dialog/EmoEvaluation/*.txt nor {CSV_FILE} under {folder}"
    )


def _evaluation_files(folder: Path) -> list[Path]:
    """The per-dialog label files; the Categorical/Attribute sub-folders hold raw ratings."""
    files = []
    for session in range(1, NUM_SESSIONS + 1):
        evaluation_dir = folder / f"Session{session}" / "dialog" / "EmoEvaluation"
        if evaluation_dir.is_dir():
            files += sorted(
                path
                for path in evaluation_dir.iterdir()
                if path.is_file() and path.suffix == ".txt" and not path.name.startswith(".")
            )
    return files


def _prepare_from_release(
    folder: Path, evaluation_files: list[Path], progress: ProgressCallback | None
) -> list[ManifestRow]:
    labels: dict[str, dict[str, str]] = {}
    for path in evaluation_files:
        for utterance, fields in _read_evaluation_file(path).items():
            labels[utterance] = fields
    audio_by_utterance = {}
    for session in range(1, NUM_SESSIONS + 1):
        audio_dir = folder / f"Session{session}" / "sentences" / "wav"
        if audio_dir.is_dir():
            for path in iter_files(audio_dir):
                if stem_of(path) in labels:
                    audio_by_utterance.setdefault(stem_of(path), []).append(path)
    candidates = []
    for utterance, fields in labels.items():
        for path in audio_by_utterance.get(utterance, []):
            candidates.append(Candidate(f"{CORPUS}:{utterance}", path, fields))
    missing = sorted(set(labels) - set(audio_by_utterance))
    if missing:
        warn(
            TITLE,
            f"{len(missing)} labelled utterances have no audio under SessionN/sentences/wav",
            missing,
        )
    rows = rows_from_candidates(
        candidates, corpus=CORPUS, title=TITLE, progress=progress, describe=_describe
    )
    if not rows:
        raise no_clips_error(TITLE, folder, "SessionN/sentences/wav/<dialog>/<utterance>.wav")
    return rows


def _read_evaluation_file(path: Path) -> dict[str, dict[str, str]]:
    """Utterance -> label code and ratings, from one ``EmoEvaluation/<dialog>.txt``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise CorpusError(f"{TITLE}: cannot read {path}: {error.strerror}") from None
    utterances = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("["):
            continue  # annotator lines (C-E1:, A-F1:) and the header
        match = _EVALUATION_LINE.match(line)
        if match is None or _UTTERANCE.match(match["utterance"]) is None:
            raise CorpusError(f"{TITLE}: {path} line {number} is not an utterance label: {line!r}")
        fields = match.groupdict()
        if fields["code"] not in CORPUS_LABEL_MAPS[CORPUS]:
            allowed = ", ".join(CORPUS_LABEL_MAPS[CORPUS])
            raise CorpusError(
                f"{TITLE}: {path} line {number}: unknown emotion code {fields['code']!r} "
                f"(allowed: {allowed})"
            )
        utterances[fields.pop("utterance")] = fields
    return utterances


def _prepare_from_csv(csv_path: Path, progress: ProgressCallback | None) -> list[ManifestRow]:
    base = csv_path.resolve().parent
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CorpusError(f"{TITLE}: cannot read {csv_path}: {error}") from None
    missing_columns = [column for column in ("emotion", "path") if column not in header]
    if missing_columns:
        raise CorpusError(
            f"{TITLE}: {csv_path} lacks columns {', '.join(missing_columns)} "
            f"(expected: {', '.join(CSV_COLUMNS)})"
        )
    problems = []
    candidates = []
    missing_audio = []
    for line, record in enumerate(records, start=2):
        relative = (record.get("path") or "").strip()
        code = (record.get("emotion") or "").strip()
        utterance = stem_of(Path(relative))
        if _UTTERANCE.match(utterance) is None:
            problems.append(f"line {line}: path {relative!r} is not an IEMOCAP utterance file")
            continue
        if code not in CORPUS_LABEL_MAPS[CORPUS]:
            problems.append(f"line {line}: unknown emotion code {code!r}")
            continue
        path = _resolve_audio(relative, base)
        if path is None:
            missing_audio.append(relative)
            continue
        fields = {"code": code, "valence": "", "arousal": "", "dominance": ""}
        candidates.append(Candidate(f"{CORPUS}:{utterance}", path, fields))
    if problems:
        allowed = ", ".join(CORPUS_LABEL_MAPS[CORPUS])
        listed = "\n  ".join(problems[:20])
        raise CorpusError(
            f"{TITLE}: {csv_path} has {len(problems)} bad rows "
            f"(emotion codes: {allowed}):\n  {listed}"
        )
    if missing_audio:
        warn(
            TITLE, f"{len(missing_audio)} rows of {csv_path.name} have no audio file", missing_audio
        )
    rows = rows_from_candidates(
        candidates, corpus=CORPUS, title=TITLE, progress=progress, describe=_describe
    )
    if not rows:
        raise no_clips_error(TITLE, base, f"the audio files that {csv_path.name} lists")
    return rows


def _resolve_audio(relative: str, base: Path) -> Path | None:
    """The audio file a CSV path names; CSVs ship both inside and beside the release folder."""
    for root in (base, base / RELEASE_FOLDER):
        path = root / relative
        if path.is_file():
            return path
    return None


def _describe(candidate: Candidate) -> dict[str, Any]:
    """An utterance's speaker and session, named in its id, with its label and ratings."""
    utterance = candidate.clip_id.split(":", 1)[1]
    match = _UTTERANCE.match(utterance)
    assert match is not None  # candidates were filtered by the same pattern
    fields = candidate.fields
    return {
        "speaker": f"{CORPUS}:Ses{match['session']}{match['speaker']}",
        "gender": _GENDERS[match["speaker"]],
        "group": f"Session{int(match['session'])}",
        "label": from_corpus_label(CORPUS, fields["code"]),
        "original_label": fields["code"],
        "valence": _optional_float(fields["valence"]),
        "arousal": _optional_float(fields["arousal"]),
        "dominance": _optional_float(fields["dominance"]),
        "language": LANGUAGE,
    }


def _optional_float(text: str) -> float | None:
    return float(text) if text else None
