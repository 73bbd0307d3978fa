"""TESS, the Toronto Emotional Speech Set.

2 female actors (aged 26 "YAF" and 64 "OAF"), Canadian English, 200 target words in the
carrier phrase "Say the word ..." in 7 emotions (anger, disgust, fear, happiness,
pleasant surprise, sadness, neutral): 2,800 clips.
Source: https://doi.org/10.5683/SP2/E8H2MF (University of Toronto Dataverse).
License: CC BY-NC-ND 4.0.
Citation: Pichora-Fuller & Dupuis (2020), Toronto emotional speech set (TESS).

Layout: ``OAF_back_angry.<wav|flac|...>`` (speaker, word, emotion; ``ps`` is pleasant
surprise), flat or in per-emotion folders such as ``OAF_angry/``.
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

CORPUS = "tess"
TITLE = "TESS"
LANGUAGE = "en"
# Older and younger adult female; both speakers are women.
SPEAKERS = ("OAF", "YAF")
GENDER = "female"

_FILE_NAME = re.compile(
    r"^(?P<speaker>OAF|YAF)_(?P<word>[a-z]+)_(?P<emotion>[a-z]+)$", re.IGNORECASE
)


def prepare_tess(
    corpus_dir: str | Path, *, progress: ProgressCallback | None = None
) -> list[ManifestRow]:
    """Find the TESS clips under `corpus_dir` and label them from their file names.

    Parameters
    ----------
    corpus_dir : str or Path
        The folder holding the clips, flat or in per-emotion folders.
    progress : callable, optional
        Called as ``progress(done, total)`` while audio files are read.

    Returns
    -------
    list of ManifestRow
        One row per clip; speaker ``"tess:OAF"`` or ``"tess:YAF"``, group = speaker.

    Raises
    ------
    CorpusError
        When the folder holds no TESS clips.
    """
    folder = corpus_folder(corpus_dir, TITLE)
    candidates = []
    for path in iter_files(folder):
        fields = _parse_file_name(stem_of(path))
        if fields is not None:
            clip_name = f"{fields['speaker']}_{fields['word']}_{fields['emotion']}"
            candidates.append(Candidate(f"{CORPUS}:{clip_name}", path, fields))
    rows = rows_from_candidates(
        candidates, corpus=CORPUS, title=TITLE, progress=progress, describe=_describe
    )
    if not rows:
        raise no_clips_error(TITLE, folder, "OAF_back_angry.wav-style clips")
    return rows


def _describe(candidate: Candidate) -> dict[str, Any]:
    """A clip's speaker and labels; both TESS speakers are female."""
    fields = candidate.fields
    return acted_clip(
        CORPUS, fields["speaker"], fields["emotion"], gender=GENDER, language=LANGUAGE
    )


def _parse_file_name(stem: str) -> dict[str, str] | None:
    """Fields of a TESS clip name (normalised case), or None for anything else."""
    match = _FILE_NAME.match(stem)
    if match is None:
        return None
    # Some distributions capitalise names inconsistently (OAF_Fear, YAF_back_Fear).
    fields = {
        "speaker": match["speaker"].upper(),
        "word": match["word"].lower(),
        "emotion": match["emotion"].lower(),
    }
    if fields["emotion"] not in CORPUS_LABEL_MAPS[CORPUS]:
        return None
    return fields
