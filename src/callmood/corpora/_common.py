"""What every corpus loader shares: finding clips by content, reading their length, and errors."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callmood.audio import AudioError, EmptyAudioError, NotAudioError, audio_info, load_audio
from callmood.errors import CallmoodError
from callmood.labels import from_corpus_label
from callmood.manifest import ManifestRow

# Called as progress(done, total) while clips are read, for the CLI's progress bar.
ProgressCallback = Callable[[int, int], None]

# Clips named in warnings; the rest are counted.
_MAX_NAMED = 5


class CorpusError(CallmoodError):
    """A corpus folder or label file that cannot be used; the message says which and why."""


class CorpusWarning(UserWarning):
    """Some clips of a corpus were skipped (unreadable audio, labels without audio, ...)."""


@dataclass(frozen=True)
class ClipInfo:
    """An audio file found on disk, with what the manifest needs to know about it."""

    path: Path
    duration_seconds: float
    sample_rate: int


@dataclass(frozen=True)
class Candidate:
    """A file whose name fits the corpus's naming, with the fields parsed from that name."""

    clip_id: str
    path: Path
    fields: dict[str, str]


def corpus_folder(corpus_dir: str | Path, title: str) -> Path:
    """Return the corpus folder as an absolute path, or raise a clear error when it is not one."""
    folder = Path(corpus_dir).expanduser()
    if not folder.exists():
        raise CorpusError(f"{title}: folder {folder} does not exist")
    if not folder.is_dir():
        raise CorpusError(f"{title}: {folder} is not a folder")
    return folder.resolve()


def iter_files(root: Path) -> Iterator[Path]:
    """Yield the files under `root` in sorted order, skipping hidden ones.

    Hidden names include macOS ``._`` resource forks that ride along in corpus archives and
    carry the clip's name with no audio in them.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def stem_of(path: Path) -> str:
    """The file name without its extension: clips are named by corpus convention, any format."""
    return path.name.rsplit(".", 1)[0] if "." in path.name else path.name


def read_clip_infos(
    paths: Iterable[Path],
    *,
    title: str,
    progress: ProgressCallback | None = None,
) -> dict[Path, ClipInfo]:
    """Read duration and sample rate of each file by its content, skipping what is not audio.

    Files that are not audio at all are left out silently (a clip-like name is not enough);
    audio that cannot be decoded or is empty is left out with one :class:`CorpusWarning`
    naming the files.
    """
    paths = list(paths)
    infos: dict[Path, ClipInfo] = {}
    unreadable: list[str] = []
    for done, path in enumerate(paths, start=1):
        try:
            infos[path] = _clip_info(path)
        except NotAudioError:
            pass
        except AudioError as error:
            unreadable.append(f"{path.name} ({error})")
        if progress is not None:
            progress(done, len(paths))
    if unreadable:
        warn(title, f"skipped {len(unreadable)} unreadable audio files", unreadable)
    return infos


def _clip_info(path: Path) -> ClipInfo:
    """Length and rate from the header; decoded only when the header gives no length."""
    info = audio_info(path)
    duration_seconds = info.duration_seconds
    if info.frames <= 0:
        # Some containers read through FFmpeg state no duration: measure by decoding.
        duration_seconds = load_audio(path, sample_rate=None).duration_seconds
    if duration_seconds <= 0:
        raise EmptyAudioError(f"{path}: no audio samples")
    return ClipInfo(path, float(duration_seconds), int(info.sample_rate))


def warn(title: str, what: str, examples: list[str]) -> None:
    """Issue one :class:`CorpusWarning` for a batch of skipped clips, naming a few of them."""
    named = ", ".join(examples[:_MAX_NAMED])
    more = f" and {len(examples) - _MAX_NAMED} more" if len(examples) > _MAX_NAMED else ""
    warnings.warn(f"{title}: {what}: {named}{more}", CorpusWarning, stacklevel=3)


def keep_first(candidates: list[Candidate], title: str) -> list[Candidate]:
    """Drop clips whose id was already seen (the same clip in two formats or two folders)."""
    seen: dict[str, Candidate] = {}
    repeated: list[str] = []
    for candidate in candidates:
        if candidate.clip_id in seen:
            first = seen[candidate.clip_id].path.name
            repeated.append(f"{candidate.path} (same clip as {first})")
        else:
            seen[candidate.clip_id] = candidate
    if repeated:
        warn(title, f"ignored {len(repeated)} second copies of clips", repeated)
    return list(seen.values())


def rows_from_candidates(
    candidates: list[Candidate],
    *,
    corpus: str,
    title: str,
    progress: ProgressCallback | None,
    describe: Callable[[Candidate], dict[str, Any]],
) -> list[ManifestRow]:
    """One manifest row per clip: first copies only, and only clips whose audio can be read.

    `describe` gives a clip's own fields: ``speaker``, ``gender``, ``label``,
    ``original_label`` and ``language``, and where they differ from the defaults ``group``
    (the speaker) and ``valence``, ``arousal``, ``dominance`` (None). Id, path, duration
    and sample rate come from the candidate and its audio.
    """
    candidates = keep_first(candidates, title)
    infos = read_clip_infos((c.path for c in candidates), title=title, progress=progress)
    rows = []
    for candidate in candidates:
        info = infos.get(candidate.path)
        if info is None:
            continue
        own = describe(candidate)
        fields = {"group": own["speaker"], "valence": None, "arousal": None, "dominance": None}
        rows.append(
            ManifestRow(
                id=candidate.clip_id,
                corpus=corpus,
                path=str(candidate.path),
                duration_seconds=info.duration_seconds,
                sample_rate=info.sample_rate,
                **(fields | own),
            )
        )
    return rows


def acted_clip(
    corpus: str, speaker: str, emotion: str, *, gender: str | None, language: str
) -> dict[str, Any]:
    """`describe`'s fields for a clip named with its speaker and the corpus's emotion code.

    The label is the code mapped into callmood's emotions; the code itself is kept as
    ``original_label``.
    """
    return {
        "speaker": f"{corpus}:{speaker}",
        "gender": gender,
        "label": from_corpus_label(corpus, emotion),
        "original_label": emotion,
        "language": language,
    }


def no_clips_error(title: str, folder: Path, expected: str) -> CorpusError:
    """The error for a folder that holds none of the corpus's clips."""
    return CorpusError(f"{title}: no clips found under {folder}; expected {expected}")
