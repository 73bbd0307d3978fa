"""SAVEE, the Surrey Audio-Visual Expressed Emotion database (audio part).

4 male speakers (DC, JE, JK, KL), British English, 15 sentences per emotion
(30 neutral) in 7 emotions (anger, disgust, fear, happiness, neutral, sadness,
surprise): 480 clips, 120 per speaker.
Source: http://kahlan.eps.surrey.ac.uk/savee/ (``AudioData/``, after registering).
License: free for research use; cite Haq & Jackson (2009), "Speaker-dependent
audio-visual emotion recognition", AVSP.

Layout: per-speaker folders ``AudioData/DC/a01.wav`` (the release) or flat
``DC_a01.wav`` (common re-distributions); the letters before the sentence number are the
emotion: a anger, d disgust, f fear, h happiness, n neutral, sa sadness, su surprise.
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
from callmood.manifest import ManifestRow

CORPUS = "savee"
TITLE = "SAVEE"
LANGUAGE = "en"
SPEAKERS = ("DC", "JE", "JK", "KL")
GENDER = "male"

# Two-letter codes first, so that "sa01" is sadness and not "s" + "a01".
_FILE_NAME = re.compile(
    r"^(?:(?P<speaker>DC|JE|JK|KL)_)?(?P<emotion>sa|su|a|d|f|h|n)(?P<number>\d\d)$"
)


def prepare_savee(
    corpus_dir: str | Path, *, progress: ProgressCallback | None = None
) -> list[ManifestRow]:
    """Find the SAVEE clips under `corpus_dir` and label them from their names.

    Parameters
    ----------
    corpus_dir : str or Path
        ``AudioData/`` (per-speaker folders) or a folder of ``DC_a01.wav``-style clips.
    progress : callable, optional
        Called as ``progress(done, total)`` while audio files are read.

    Returns
    -------
    list of ManifestRow
        One row per clip; speaker ``"savee:DC"``, group = speaker.

    Raises
    ------
    CorpusError
        When the folder holds no SAVEE clips.
    """
    folder = corpus_folder(corpus_dir, TITLE)
    candidates = []
    for path in iter_files(folder):
        fields = _parse_file_name(stem_of(path), path.parent.name)
        if fields is not None:
            clip_name = f"{fields['speaker']}_{fields['emotion']}{fields['number']}"
            candidates.append(Candidate(f"{CORPUS}:{clip_name}", path, fields))
    rows = rows_from_candidates(
        candidates, corpus=CORPUS, title=TITLE, progress=progress, describe=_describe
    )
    if not rows:
        raise no_clips_error(TITLE, folder, "DC/a01.wav or DC_a01.wav-style clips")
    return rows


def _describe(candidate: Candidate) -> dict[str, Any]:
    """A clip's speaker and labels; all SAVEE speakers are male."""
    fields = candidate.fields
    return acted_clip(
        CORPUS, fields["speaker"], fields["emotion"], gender=GENDER, language=LANGUAGE
    )


def _parse_file_name(stem: str, parent_name: str) -> dict[str, str] | None:
    """Fields of a SAVEE clip; the speaker comes from the name or else from its folder."""
    match = _FILE_NAME.match(stem)
    if match is None:
        return None
    speaker = match["speaker"] or parent_name
    if speaker not in SPEAKERS:
        return None
    return {"speaker": speaker, "emotion": match["emotion"], "number": match["number"]}
