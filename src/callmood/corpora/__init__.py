"""Emotional speech corpora: one module per corpus, each turning a folder into manifest rows.

Every module has the same shape (docstring with the corpus's facts, constants, one public
``prepare_<name>(corpus_dir)``), so adding a corpus means copying one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from callmood.corpora._common import CorpusError, CorpusWarning, ProgressCallback
from callmood.corpora.ased import prepare_ased
from callmood.corpora.cremad import prepare_cremad
from callmood.corpora.custom import prepare_custom
from callmood.corpora.emodb import prepare_emodb
from callmood.corpora.iemocap import prepare_iemocap
from callmood.corpora.ravdess import prepare_ravdess
from callmood.corpora.savee import prepare_savee
from callmood.corpora.tess import prepare_tess
from callmood.manifest import ManifestRow

CORPORA: dict[str, Callable[..., list[ManifestRow]]] = {
    "iemocap": prepare_iemocap,
    "ravdess": prepare_ravdess,
    "cremad": prepare_cremad,
    "tess": prepare_tess,
    "savee": prepare_savee,
    "emodb": prepare_emodb,
    "ased": prepare_ased,
    "custom": prepare_custom,
}

__all__ = [
    "CORPORA",
    "CorpusError",
    "CorpusWarning",
    "prepare",
    "prepare_ased",
    "prepare_cremad",
    "prepare_custom",
    "prepare_emodb",
    "prepare_iemocap",
    "prepare_ravdess",
    "prepare_savee",
    "prepare_tess",
]


def prepare(
    name: str,
    path: str | Path,
    *,
    progress: ProgressCallback | None = None,
    **options: Any,
) -> list[ManifestRow]:
    """Prepare the corpus `name` found at `path`.

    Parameters
    ----------
    name : str
        A key of :data:`CORPORA` (``"iemocap"``, ``"ravdess"``, ...).
    path : str or Path
        The corpus folder (or, for ``iemocap`` and ``custom``, a CSV file).
    progress : callable, optional
        Called as ``progress(done, total)`` while audio files are read.
    **options
        Corpus-specific options, e.g. ``min_recognition=80`` for ``emodb``.

    Raises
    ------
    CorpusError
        For an unknown corpus name, an option the corpus does not take, or a corpus that
        cannot be read.
    """
    try:
        prepare_corpus = CORPORA[name]
    except KeyError:
        raise CorpusError(f"unknown corpus {name!r}; known corpora: {', '.join(CORPORA)}") from None
    accepted = inspect.signature(prepare_corpus).parameters
    unknown = [option for option in options if option not in accepted]
    if unknown:
        raise CorpusError(f"corpus {name!r} does not take the option(s) {', '.join(unknown)}")
    return prepare_corpus(path, progress=progress, **options)
