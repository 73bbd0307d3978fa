"""EmoDB, the Berlin Database of Emotional Speech.

10 actors (5 female, 5 male), German, 10 everyday sentences in 7 emotions (anger,
boredom, disgust, fear, happiness, sadness, neutral): 535 clips kept after a listening
test with 20 listeners. ``erkennung.txt`` gives, per clip, the percentage of listeners
who recognised the intended emotion; many published results keep clips with >= 80 %.
Source: http://emodb.bilderbar.info (``download.zip``). License: free for research use,
cite Burkhardt et al. (2005), "A Database of German Emotional Speech", Interspeech.

Layout: ``wav/SSTTTEV.<wav|flac|...>``: speaker (03..16), text (a01..b10), emotion letter
(German initial: W Wut, L Langeweile, E Ekel, A Angst, F Freude, T Trauer, N neutral),
version (a, b, ...); ``erkennung.txt`` next to ``wav/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from callmood.corpora._common import (
    Candidate,
    CorpusError,
    ProgressCallback,
    acted_clip,
    corpus_folder,
    iter_files,
    no_clips_error,
    rows_from_candidates,
    stem_of,
    warn,
)
from callmood.labels import CORPUS_LABEL_MAPS
from callmood.manifest import ManifestRow

CORPUS = "emodb"
TITLE = "EmoDB"
LANGUAGE = "de"
# Speaker genders as given in the EmoDB documentation.
SPEAKER_GENDERS: dict[str, str] = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}
RECOGNITION_FILE = "erkennung.txt"
# The listening-test file predates UTF-8 and pads numbers with non-breaking spaces.
RECOGNITION_ENCODING = "iso-8859-1"

_FILE_NAME = re.compile(
    r"^(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[A-Z])(?P<version>[a-z])$"
)
# One line of erkennung.txt: number, clip file, recognised %, natural % (decimal comma).
_RECOGNITION_LINE = re.compile(
    r"(?P<clip>\d\d[ab]\d\d[A-Z][a-z])\.wav\s+(?P<recognised>\d+(?:[.,]\d+)?)"
)


def prepare_emodb(
    corpus_dir: str | Path,
    *,
    min_recognition: float | None = None,
    progress: ProgressCallback | None = None,
) -> list[ManifestRow]:
    """Find the EmoDB clips under `corpus_dir` and label them from their file names.

    Parameters
    ----------
    corpus_dir : str or Path
        The folder holding ``wav/`` (and ``erkennung.txt`` for `min_recognition`).
    min_recognition : float, optional
        Keep only clips whose emotion at least this percentage (0-100) of the listeners
        recognised, from ``erkennung.txt``; ``None`` keeps all clips.
    progress : callable, optional
        Called as ``progress(done, total)`` while audio files are read.

    Returns
    -------
    list of ManifestRow
        One row per clip; speaker ``"emodb:NN"``, group = speaker.

    Raises
    ------
    CorpusError
        When the folder holds no EmoDB clips, or `min_recognition` is out of range or
        ``erkennung.txt`` is missing or unreadable.
    """
    folder = corpus_folder(corpus_dir, TITLE)
    recognition = None
    if min_recognition is not None:
        if not 0 <= min_recognition <= 100:
            raise CorpusError(
                f"{TITLE}: min_recognition must be a percentage 0-100, got {min_recognition}"
            )
        recognition = read_recognition_rates(folder / RECOGNITION_FILE)
    candidates = []
    unrated = []
    for path in iter_files(folder):
        fields = _parse_file_name(stem_of(path))
        if fields is None:
            continue
        if recognition is not None:
            rate = recognition.get(stem_of(path))
            if rate is None:
                unrated.append(path.name)
                continue
            if rate < min_recognition:  # type: ignore[operator]
                continue
        candidates.append(Candidate(f"{CORPUS}:{stem_of(path)}", path, fields))
    if unrated:
        warn(TITLE, f"left out {len(unrated)} clips that {RECOGNITION_FILE} does not rate", unrated)
    rows = rows_from_candidates(
        candidates, corpus=CORPUS, title=TITLE, progress=progress, describe=_describe
    )
    if not rows:
        if recognition is not None:
            raise CorpusError(
                f"{TITLE}: no clip under {folder} reaches {min_recognition} % recognition"
            )
        raise no_clips_error(TITLE, folder, "wav/03a01Fa.wav-style clips")
    return rows


def _describe(candidate: Candidate) -> dict[str, Any]:
    """A clip's speaker, with the gender the EmoDB documentation gives, and labels."""
    speaker, emotion = candidate.fields["speaker"], candidate.fields["emotion"]
    return acted_clip(CORPUS, speaker, emotion, gender=SPEAKER_GENDERS[speaker], language=LANGUAGE)


def read_recognition_rates(path: Path) -> dict[str, float]:
    """Read ``erkennung.txt``: clip name (no extension) -> % of listeners who recognised it.

    Raises
    ------
    CorpusError
        When the file is missing or holds no rates.
    """
    if not path.is_file():
        raise CorpusError(f"{TITLE}: {path} not found; it is needed to filter by recognition rate")
    text = path.read_bytes().decode(RECOGNITION_ENCODING).replace("\xa0", " ")
    rates = {}
    for line in text.splitlines():
        match = _RECOGNITION_LINE.search(line)
        if match is not None:
            rates[match["clip"]] = float(match["recognised"].replace(",", "."))
    if not rates:
        raise CorpusError(
            f"{TITLE}: {path} holds no recognition rates (expected lines like "
            "'1  03a01Ab.wav  65,00  35,00')"
        )
    return rates


def _parse_file_name(stem: str) -> dict[str, str] | None:
    """Fields of an EmoDB clip name, or None for anything else."""
    match = _FILE_NAME.match(stem)
    if match is None:
        return None
    fields = match.groupdict()
    if (
        fields["speaker"] not in SPEAKER_GENDERS
        or fields["emotion"] not in CORPUS_LABEL_MAPS[CORPUS]
    ):
        return None
    return fields
