"""Emotion label names, each corpus's label codes, and the named label sets used for training.

This is the one source of truth for label names: corpus loaders, training,
inference and the dashboard import them from here instead of spelling them.
"""

from __future__ import annotations

from collections.abc import Iterable

from callmood.errors import CallmoodError

# Canonical emotion names, in the order reports and one-hot columns use.
# "unknown" holds clips whose annotators did not agree (IEMOCAP "xxx").
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
    "bored",
    "frustrated",
    "excited",
    "other",
    "unknown",
)

# Each corpus's own label code (as it appears in file names or label files) -> canonical name.
CORPUS_LABEL_MAPS: dict[str, dict[str, str]] = {
    "iemocap": {
        "neu": "neutral",
        "hap": "happy",
        "exc": "excited",
        "sad": "sad",
        "ang": "angry",
        "fru": "frustrated",
        "sur": "surprised",
        "fea": "fearful",
        "dis": "disgust",
        "oth": "other",
        "xxx": "unknown",
    },
    # RAVDESS: the third field of the file name.
    "ravdess": {
        "01": "neutral",
        "02": "calm",
        "03": "happy",
        "04": "sad",
        "05": "angry",
        "06": "fearful",
        "07": "disgust",
        "08": "surprised",
    },
    # CREMA-D: the third field of the file name.
    "cremad": {
        "ANG": "angry",
        "DIS": "disgust",
        "FEA": "fearful",
        "HAP": "happy",
        "NEU": "neutral",
        "SAD": "sad",
    },
    # TESS: the last word of the file name; "ps" is "pleasant surprise".
    "tess": {
        "angry": "angry",
        "disgust": "disgust",
        "fear": "fearful",
        "happy": "happy",
        "neutral": "neutral",
        "ps": "surprised",
        "sad": "sad",
    },
    # SAVEE: the letters before the sentence number.
    "savee": {
        "a": "angry",
        "d": "disgust",
        "f": "fearful",
        "h": "happy",
        "n": "neutral",
        "sa": "sad",
        "su": "surprised",
    },
    # EmoDB: the German initial in the file name (Wut, Langeweile, Ekel, Angst, Freude, Trauer).
    "emodb": {
        "W": "angry",
        "L": "bored",
        "E": "disgust",
        "A": "fearful",
        "F": "happy",
        "T": "sad",
        "N": "neutral",
    },
    # ASED: the emotion letter and folder number that start the file name.
    "ased": {
        "n1": "neutral",
        "f2": "fearful",
        "h3": "happy",
        "s4": "sad",
        "a5": "angry",
    },
}

# Named label sets: the classes a model is trained on, in output order.
LABEL_SETS: dict[str, tuple[str, ...]] = {
    # The standard IEMOCAP 4-class protocol (happy and excited merged).
    "iemocap4": ("neutral", "happy", "sad", "angry"),
    # IEMOCAP's six most frequent classes, no merging.
    "iemocap6": ("neutral", "happy", "sad", "angry", "excited", "frustrated"),
    "ravdess8": ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    "emodb7": ("neutral", "happy", "sad", "angry", "fearful", "disgust", "bored"),
    # Ekman's six basic emotions plus neutral (also the TESS and SAVEE classes).
    "ekman7": ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    "cremad6": ("neutral", "happy", "sad", "angry", "fearful", "disgust"),
    # ASED's five classes.
    "ased5": ("neutral", "happy", "sad", "angry", "fearful"),
}

# Merges applied before a label is looked up in a set, when the set does not hold the label
# itself: calm is low-arousal neutral, excited is high-arousal happy (the IEMOCAP convention).
_MERGES: dict[str, str] = {"calm": "neutral", "excited": "happy"}

# Everyday spellings users write in their own label files -> canonical name.
_SYNONYMS: dict[str, str] = {
    "neutrality": "neutral",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "anger": "angry",
    "fear": "fearful",
    "afraid": "fearful",
    "disgusted": "disgust",
    "surprise": "surprised",
    "boredom": "bored",
    "frustration": "frustrated",
    "excitement": "excited",
}


class LabelError(CallmoodError):
    """A label or label-set name that callmood does not know."""


def canonical_label(name: str) -> str:
    """Return the canonical emotion name for `name` (case and common synonyms tolerated).

    Parameters
    ----------
    name : str
        An emotion name such as ``"Happy"``, ``"anger"`` or ``"neutral"``.

    Raises
    ------
    LabelError
        When the name is not an emotion callmood knows; the message lists the allowed names.
    """
    key = str(name).strip().lower()
    if key in EMOTIONS:
        return key
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    raise LabelError(f"unknown emotion label {name!r}; allowed labels: {', '.join(EMOTIONS)}")


def from_corpus_label(corpus: str, code: str) -> str:
    """Map a corpus's own label code (``"exc"``, ``"05"``, ``"W"``) to the canonical name.

    Raises
    ------
    LabelError
        When the corpus or the code is unknown.
    """
    try:
        corpus_map = CORPUS_LABEL_MAPS[corpus]
    except KeyError:
        known = ", ".join(sorted(CORPUS_LABEL_MAPS))
        raise LabelError(f"no label map for corpus {corpus!r}; known: {known}") from None
    try:
        return corpus_map[code]
    except KeyError:
        allowed = ", ".join(corpus_map)
        raise LabelError(f"{corpus}: unknown label code {code!r}; allowed: {allowed}") from None


def label_set(set_name: str) -> tuple[str, ...]:
    """Return the classes of a named label set, in model output order.

    Raises
    ------
    LabelError
        When no set has that name; the message lists the known sets.
    """
    try:
        return LABEL_SETS[set_name]
    except KeyError:
        known = ", ".join(LABEL_SETS)
        raise LabelError(f"unknown label set {set_name!r}; known sets: {known}") from None


def to_label_set(label: str, set_name: str) -> str | None:
    """Map a canonical label into a named label set.

    Parameters
    ----------
    label : str
        A canonical emotion name (see :data:`EMOTIONS`).
    set_name : str
        A key of :data:`LABEL_SETS`, e.g. ``"iemocap4"``.

    Returns
    -------
    str or None
        The class in the set (``"excited"`` -> ``"happy"`` and ``"calm"`` -> ``"neutral"``
        when the set lacks them), or ``None`` when the set drops the label (frustrated,
        unknown, ... in ``iemocap4``).
    """
    classes = label_set(set_name)
    label = canonical_label(label)
    if label in classes:
        return label
    merged = _MERGES.get(label)
    if merged is not None and merged in classes:
        return merged
    return None


def order_labels(labels: Iterable[str]) -> list[str]:
    """Return distinct labels in canonical order (labels outside :data:`EMOTIONS` last, sorted)."""
    distinct = set(labels)
    known = [name for name in EMOTIONS if name in distinct]
    return known + sorted(distinct - set(EMOTIONS))
