"""ASED v1, the Amharic Speech Emotion Dataset.

65 speakers (25 female, 40 male), Amharic, 5 emotions (neutral, fearful, happy, sad,
angry), 2474 clips, each accepted by at least 5 of 8 judges. Speakers recorded at a time
and place of their own choosing, so rooms and microphones vary from speaker to speaker.
Each speaker read sentences written for one emotion each, so within ASED the words can
give the label away: speaker-grouped folds do not prevent that, leaving the corpus out does.
License: released by its authors as freely available for research use; cite Retta EA,
Almekhlafi E, Sutcliffe R, Mhamed M, Ali H, Feng J (2022), "A New Amharic Speech Emotion
Dataset and Classification Benchmark", ACM Transactions on Asian and Low-Resource Language
Information Processing (TALLIP).

Layout: ``NNEmotion/EN-SS-RR-GG-PP.<wav|flac|...>`` (e.g. ``05Angry/a5-03-01-02-50.flac``):
emotion letter and folder number (n1 neutral, f2 fearful, h3 happy, s4 sad, a5 angry),
sentence (01..07), repetition (01, 02), gender (01 female, 02 male), speaker (01..65).
"""

from __future__ import annotations

import re
from collections import Counter
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

CORPUS = "ased"
TITLE = "ASED"
LANGUAGE = "am"
NUM_SPEAKERS = 65
GENDER_CODES: dict[str, str] = {"01": "female", "02": "male"}

# One release file is named with an upper-case letter (S4-04-02-01-29): match any case.
_FILE_NAME = re.compile(
    r"^(?P<emotion>[a-z]\d)-(?P<sentence>\d\d)-(?P<repetition>\d\d)-(?P<gender>\d\d)-"
    r"(?P<speaker>\d\d)$",
    re.IGNORECASE,
)


def prepare_ased(
    corpus_dir: str | Path, *, progress: ProgressCallback | None = None
) -> list[ManifestRow]:
    """Find the ASED clips under `corpus_dir` and label them from their file names.

    A speaker's gender is the one most of the speaker's clips are named with: five clips
    of the release (speakers 09, 15, 21, 23, 25) carry the other gender code by mistake,
    and the speaker number alone identifies the speaker.

    Parameters
    ----------
    corpus_dir : str or Path
        The folder holding ``01Neutral`` ... ``05Angry`` (or the clips directly).
    progress : callable, optional
        Called as ``progress(done, total)`` while audio files are read.

    Returns
    -------
    list of ManifestRow
        One row per clip; speaker ``"ased:NN"``, group = speaker.

    Raises
    ------
    CorpusError
        When the folder does not exist or holds no ASED clips.
    """
    folder = corpus_folder(corpus_dir, TITLE)
    candidates = []
    for path in iter_files(folder):
        fields = _parse_file_name(stem_of(path))
        if fields is not None:
            candidates.append(Candidate(f"{CORPUS}:{stem_of(path).lower()}", path, fields))
    genders = _majority_genders(candidates)

    def describe(candidate: Candidate) -> dict[str, Any]:
        speaker, emotion = candidate.fields["speaker"], candidate.fields["emotion"]
        return acted_clip(CORPUS, speaker, emotion, gender=genders[speaker], language=LANGUAGE)

    rows = rows_from_candidates(
        candidates, corpus=CORPUS, title=TITLE, progress=progress, describe=describe
    )
    if not rows:
        raise no_clips_error(TITLE, folder, "NNEmotion/a5-SS-RR-GG-PP.wav-style clips")
    return rows


def _majority_genders(candidates: list[Candidate]) -> dict[str, str]:
    """Speaker -> the gender most of the speaker's clips are named with (ties: the first seen)."""
    votes: dict[str, Counter[str]] = {}
    for candidate in candidates:
        speaker = candidate.fields["speaker"]
        votes.setdefault(speaker, Counter())[GENDER_CODES[candidate.fields["gender"]]] += 1
    return {speaker: counts.most_common(1)[0][0] for speaker, counts in votes.items()}


def _parse_file_name(stem: str) -> dict[str, str] | None:
    """Fields of an ASED clip name (emotion code lower-cased), or None for anything else."""
    match = _FILE_NAME.match(stem)
    if match is None:
        return None
    fields = match.groupdict()
    fields["emotion"] = fields["emotion"].lower()
    if fields["emotion"] not in CORPUS_LABEL_MAPS[CORPUS]:
        return None
    if fields["gender"] not in GENDER_CODES or not 1 <= int(fields["speaker"]) <= NUM_SPEAKERS:
        return None
    return fields
