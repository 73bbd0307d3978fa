"""Builders of small corpus trees for tests: real naming and label-file formats, real audio.

Each clip is a short piece cut from a real RAVDESS recording in ../shared/data and written
as WAV (the format users' originals come in), so loaders meet real speech, not silence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from callmood.audio import load_audio, resample

CLIP_SECONDS = 0.25
SAMPLE_RATE = 16000


def speech_excerpt(shared_data: Path, seconds: float = CLIP_SECONDS) -> np.ndarray:
    """A short mono float32 excerpt of real speech at 16 kHz (from a RAVDESS angry clip)."""
    source = shared_data / "ravdess" / "Actor_01" / "03-01-05-01-01-01-01.flac"
    audio = load_audio(source)
    start = int(1.0 * audio.sample_rate)  # past the leading silence
    return audio.samples[0, start : start + int(seconds * audio.sample_rate)]


def write_clip(path: Path, excerpt: np.ndarray, *, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write `excerpt` (16 kHz) as 16-bit WAV at `sample_rate`, whatever `path`'s extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = excerpt if sample_rate == SAMPLE_RATE else resample(excerpt, SAMPLE_RATE, sample_rate)
    soundfile.write(path, samples, sample_rate, format="WAV", subtype="PCM_16")
    return path


# ------------------------------------------------------------------------------- IEMOCAP

# (utterance, code, valence, activation, dominance) per dialog, as in EmoEvaluation files.
IEMOCAP_LABELS: dict[str, list[tuple[str, str, float, float, float]]] = {
    "Ses01F_impro01": [
        ("Ses01F_impro01_F000", "neu", 2.5, 2.5, 2.5),
        ("Ses01F_impro01_M000", "exc", 3.5, 3.5, 3.0),
        ("Ses01F_impro01_F001", "xxx", 2.0, 3.0, 3.0),
        ("Ses01F_impro01_M001", "fru", 2.0, 3.5, 3.5),
    ],
    "Ses01F_script01_1": [
        ("Ses01F_script01_1_F000", "ang", 1.5, 4.0, 4.5),
        ("Ses01F_script01_1_M000", "sad", 1.5, 2.0, 2.0),
        ("Ses01F_script01_1_M001", "hap", 4.0, 3.0, 3.0),
    ],
    "Ses02M_impro02": [
        ("Ses02M_impro02_F000", "neu", 3.0, 2.0, 2.5),
        ("Ses02M_impro02_M000", "ang", 1.0, 4.5, 4.0),
        ("Ses02M_impro02_M001", "sur", 3.0, 4.0, 3.0),
    ],
}


def build_iemocap_release(
    root: Path, excerpt: np.ndarray, *, missing: set[str] = frozenset()
) -> Path:
    """An ``IEMOCAP_full_release`` tree with EmoEvaluation files and sentence WAVs.

    Utterances named in `missing` are labelled but get no audio file.
    """
    release = root / "IEMOCAP_full_release"
    for dialog, utterances in IEMOCAP_LABELS.items():
        session = f"Session{int(dialog[3:5])}"
        evaluation_dir = release / session / "dialog" / "EmoEvaluation"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        start = 6.2901
        for utterance, code, valence, arousal, dominance in utterances:
            lines += [
                f"[{start:.4f} - {start + 1.9456:.4f}]\t{utterance}\t{code}\t"
                f"[{valence:.4f}, {arousal:.4f}, {dominance:.4f}]",
                "C-E2:\tNeutral;\t()",
                "C-E3:\tAnger; Frustration;\t()",
                "A-E3:\tval 3; act 2; dom  2;\t()",
                "A-F1:\tval 3; act 2; dom  1;\t(curious)",
                "",
            ]
            start += 3.0
            if utterance not in missing:
                write_clip(
                    release / session / "sentences" / "wav" / dialog / f"{utterance}.wav", excerpt
                )
        evaluation_dir.mkdir(parents=True, exist_ok=True)
        (evaluation_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        # The release's raw per-annotator ratings and macOS junk must be ignored.
        categorical = evaluation_dir / "Categorical"
        categorical.mkdir(exist_ok=True)
        (categorical / f"{dialog}_e2_cat.txt").write_text(
            f"{utterances[0][0]} :Neutral state; ()\n", encoding="utf-8"
        )
        (evaluation_dir / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07Mac OS X        ")
        # Dialog-level audio (whole conversations) lives elsewhere and is not an utterance.
        write_clip(release / session / "dialog" / "wav" / f"{dialog}.wav", excerpt)
    return release


def build_iemocap_csv(root: Path, excerpt: np.ndarray) -> Path:
    """The widely shared ``iemocap_full_dataset.csv`` beside the audio it lists."""
    rows = ["session,method,gender,emotion,n_annotators,agreement,path"]
    for dialog, utterances in IEMOCAP_LABELS.items():
        session = int(dialog[3:5])
        method = "impro" if "impro" in dialog else "script"
        for utterance, code, *_ in utterances:
            relative = f"Session{session}/sentences/wav/{dialog}/{utterance}.wav"
            write_clip(root / "IEMOCAP_full_release" / relative, excerpt)
            rows.append(f"{session},{method},{utterance[-4]},{code},3,2,{relative}")
    csv_path = root / "iemocap_full_dataset.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return csv_path


# ------------------------------------------------------------------------ CREMA-D, TESS, SAVEE

CREMAD_CLIPS = (
    "1001_DFA_ANG_XX",
    "1001_IEO_HAP_HI",
    "1001_IEO_SAD_LO",
    "1002_ITS_NEU_XX",
    "1002_TIE_FEA_MD",
    "1091_WSI_DIS_XX",
)


def build_cremad(root: Path, excerpt: np.ndarray) -> Path:
    """A CREMA-D repository: ``AudioWAV/`` (16 kHz WAV, as released), an ``AudioMP3/`` copy
    of a clip, and ``VideoDemographics.csv``."""
    for name in CREMAD_CLIPS:
        write_clip(root / "AudioWAV" / f"{name}.wav", excerpt)
    # The release ships the same clips again in another format; they must not double.
    write_clip(root / "AudioMP3" / f"{CREMAD_CLIPS[0]}.mp3", excerpt)
    (root / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n"
        "1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n"
        "1091,29,Female,Asian,Not Hispanic\n",
        encoding="utf-8",
    )
    return root


TESS_CLIPS = (
    ("OAF_angry", "OAF_back_angry"),
    ("OAF_Pleasant_surprise", "OAF_back_ps"),
    ("OAF_Fear", "OAF_bite_fear"),
    ("YAF_sad", "YAF_chair_sad"),
    ("YAF_neutral", "YAF_chair_neutral"),
    ("YAF_disgust", "YAF_dog_disgust"),
    ("YAF_happy", "YAF_dog_happy"),
)


def build_tess(root: Path, excerpt: np.ndarray, *, flat: bool = False) -> Path:
    """TESS in per-emotion folders (the Dataverse/Kaggle layout) or flat."""
    for folder, name in TESS_CLIPS:
        write_clip((root if flat else root / folder) / f"{name}.wav", excerpt)
    return root


SAVEE_CLIPS = (
    ("DC", "a01"),
    ("DC", "sa02"),
    ("DC", "su03"),
    ("JE", "n01"),
    ("JK", "h05"),
    ("KL", "d15"),
    ("KL", "f07"),
)
SAVEE_SAMPLE_RATE = 44100  # the release's rate


def build_savee(root: Path, excerpt: np.ndarray, *, flat: bool = False) -> Path:
    """SAVEE as released (``AudioData/DC/a01.wav``) or flat (``DC_a01.wav``)."""
    for speaker, name in SAVEE_CLIPS:
        path = (
            root / f"{speaker}_{name}.wav" if flat else root / "AudioData" / speaker / f"{name}.wav"
        )
        write_clip(path, excerpt, sample_rate=SAVEE_SAMPLE_RATE)
    return root
