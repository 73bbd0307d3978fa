"""RAVDESS, the Ryerson Audio-Visual Database of Emotional Speech and Song (speech part).

24 professional actors (12 female, 12 male; odd numbers male), North American English,
two sentences with 8 emotions (neutral, calm, happy, sad, angry, fearful, disgust,
surprised) at two intensities: 1440 audio-only speech clips, 60 per actor.
Source: https://zenodo.org/record/1188976 (``Audio_Speech_Actors_01-24.zip``).
License: CC BY-NC-SA 4.0; models trained on it inherit the non-commercial terms.
Citation: Livingstone & Russo (2018), PLoS ONE 13(5): e0196391.

Layout: ``Actor_NN/MM-VV-EE-II-SS-RR-AA.<wav|flac|...>`` where the fields are modality
(03 audio-only), vocal channel (01 speech, 02 song), emotion, intensity, statement,
repetition and actor.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from callmood.corpora._common import (
    Candidate,
    ProgressCallback,
    acted_clip,
    corpus_folder,
    iter_files,
    no_clips_error,
    rows_from_candidates,
    stem_of,
)
from callmood.labels import CORPUS_LABEL_MAPS
from callmood.manifest import ManifestRow

CORPUS = "ravdess"
TITLE = "RAVDESS"
LANGUAGE = "en"
NUM_ACTORS = 24
AUDIO_ONLY_MODALITY = "03"
SPEECH_CHANNEL = "01"

_FILE_NAME = re.compile(
    r"^(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emotion>\d\d)-(?P<intensity>\d\d)-"
    r"(?P<statement>\d\d)-(?P<repetition>\d\d)-(?P<actor>\d\d)$"
)


def prepare_ravdess(
    corpus_dir: str | Path, *, progress: ProgressCallback | None = None
) -> list[ManifestRow]:
    """Find the RAVDESS speech clips under `corpus_dir` and label them from their file names.

    Song clips (vocal channel 02) and the video files of the full release are left out.

    Parameters
    ----------
    corpus_dir : str or Path
        The folder holding ``Actor_01`` ... ``Actor_24`` (or the clips directly).
    progress : callable, optional
        Called as ``progress(done, total)`` while audio files are read.

    Returns
    -------
    list of ManifestRow
        One row per clip; speaker ``"ravdess:NN"``, group = speaker.

    Raises
    ------
    CorpusError
        When the folder does not exist or holds no RAVDESS speech clips.
    """
    folder = corpus_folder(corpus_dir, TITLE)
    candidates = []
    for path in iter_files(folder):
        fields = _parse_file_name(stem_of(path))
        if fields is not None:
            candidates.append(Candidate(f"{CORPUS}:{stem_of(path)}", path, fields))
    rows = rows_from_candidates(
        candidates, corpus=CORPUS, title=TITLE, progress=progress, describe=_describe
    )
    if not rows:
        raise no_clips_error(TITLE, folder, "Actor_NN/03-01-EE-II-SS-RR-AA.wav speech clips")
    return rows


def _describe(candidate: Candidate) -> dict[str, Any]:
    """A clip's speaker and labels; odd-numbered actors are male."""
    actor, emotion = candidate.fields["actor"], candidate.fields["emotion"]
    gender = "male" if int(actor) % 2 == 1 else "female"
    return acted_clip(CORPUS, actor, emotion, gender=gender, language=LANGUAGE)


def _parse_file_name(stem: str) -> dict[str, str] | None:
    """Fields of an audio-only speech clip name, or None for anything else."""
    match = _FILE_NAME.match(stem)
    if match is None:
        return None
    fields = match.groupdict()
    if fields["modality"] != AUDIO_ONLY_MODALITY or fields["channel"] != SPEECH_CHANNEL:
        return None
    if fields["emotion"] not in CORPUS_LABEL_MAPS[CORPUS]:
        return None
    if not 1 <= int(fields["actor"]) <= NUM_ACTORS:
        return None
    return fields
