"""Assemble examples/demo_call.flac: a stereo 'customer-service call' from real RAVDESS clips.

The customer (left channel, one actor) starts neutral and ends angry (strong
intensity); the agent (right channel, another actor) stays neutral/calm. Turns
alternate with short silences. RAVDESS is CC BY-NC-SA 4.0 (Livingstone & Russo
2018); the clips used are listed in examples/README.md.

Usage: python scripts/make_demo_call.py [--ravdess DIR] [-o examples/demo_call.flac]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from callmood.audio import SAMPLE_RATE, load_audio
from callmood.segment import speech_segments

REPO_ROOT = Path(__file__).resolve().parents[1]
CUSTOMER_ACTOR = 3
AGENT_ACTOR = 8

# RAVDESS code: emotion-intensity-statement-repetition (01 neutral, 02 calm, 05 angry;
# intensity 01 normal, 02 strong). One inner list = one turn.
CUSTOMER_TURNS = [
    ["01-01-01-01"],
    ["01-01-02-01", "02-01-01-01"],
    ["01-01-01-02"],
    ["02-01-02-01", "01-01-02-02"],
    ["05-01-01-01"],
    ["05-01-02-01", "05-02-01-01"],
    ["05-02-01-02", "05-02-02-01"],
    ["05-02-02-02", "05-01-01-02"],
    ["05-02-01-01", "05-02-02-02"],
]
AGENT_TURNS = [
    ["01-01-01-01"],
    ["02-01-01-01"],
    ["02-01-02-01"],
    ["01-01-02-01"],
    ["02-02-01-01"],
    ["02-01-01-02"],
    ["01-01-01-02"],
    ["02-02-02-01"],
]
MARGIN_SECONDS = 0.15  # silence kept around each clip's speech
PAUSE_SECONDS = (0.6, 0.9, 1.2)  # silences between turns, cycled


def clip_path(ravdess: Path, actor: int, code: str) -> Path:
    return ravdess / f"Actor_{actor:02d}" / f"03-01-{code}-{actor:02d}.flac"


def speech_of(path: Path) -> np.ndarray:
    """The clip's speech, trimmed of its leading and trailing silence."""
    samples = load_audio(path, channels=[0]).samples[0]
    stretches = speech_segments(samples)
    if not stretches:
        return samples
    start = max(0, int((stretches[0][0] - MARGIN_SECONDS) * SAMPLE_RATE))
    end = min(len(samples), int((stretches[-1][1] + MARGIN_SECONDS) * SAMPLE_RATE))
    return samples[start:end]


def build(ravdess: Path) -> tuple[np.ndarray, list[Path]]:
    """Stereo samples (frames, 2) and the clips used, in order."""
    customer: list[np.ndarray] = []
    agent: list[np.ndarray] = []
    used: list[Path] = []
    pause_index = 0

    def pause() -> None:
        nonlocal pause_index
        silence = np.zeros(int(PAUSE_SECONDS[pause_index % len(PAUSE_SECONDS)] * SAMPLE_RATE))
        pause_index += 1
        customer.append(silence)
        agent.append(silence)

    def turn(actor: int, codes: list[str], speaking: list, listening: list) -> None:
        for code in codes:
            path = clip_path(ravdess, actor, code)
            used.append(path)
            speech = speech_of(path)
            speaking.append(speech)
            listening.append(np.zeros_like(speech))

    pause()
    for index, codes in enumerate(CUSTOMER_TURNS):
        turn(CUSTOMER_ACTOR, codes, customer, agent)
        pause()
        if index < len(AGENT_TURNS):
            turn(AGENT_ACTOR, AGENT_TURNS[index], agent, customer)
            pause()
    stereo = np.stack([np.concatenate(customer), np.concatenate(agent)], axis=1)
    return stereo.astype(np.float32), used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ravdess", type=Path, default=REPO_ROOT.parent / "shared/data/ravdess")
    parser.add_argument("-o", "--output", type=Path, default=REPO_ROOT / "examples/demo_call.flac")
    args = parser.parse_args()
    stereo, used = build(args.ravdess)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.output, stereo, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    size_mb = args.output.stat().st_size / 1e6
    print(f"wrote {args.output}: {len(stereo) / SAMPLE_RATE:.1f} s stereo, {size_mb:.2f} MB")
    for path in used:
        print(f"  {path.parent.name}/{path.name}")


if __name__ == "__main__":
    main()
