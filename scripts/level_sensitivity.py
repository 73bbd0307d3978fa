"""How much a model's answers depend on the recording level: the same clips at other gains.

A contact centre's lines are not calibrated: one trunk delivers speech 10 dB hotter than
another. A model that calls a loud line angry raises alerts about the line, not the caller.
This plays every clip of one corpus (trimmed as each model was trained: its model.json's
`trim_silence_db`) through the model as
the first window of a call of its own, at several gains, and prints, per gain and model, the
share of each predicted class, UA against the clips' labels, and how many answers differ
from the answer at 0 dB.

Usage: python scripts/level_sensitivity.py MODEL_DIR [MODEL_DIR ...] --corpus ravdess
    [--path ../shared/data/ravdess] [--gains -12 -6 0 6 12] [--limit 400]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from callmood.corpora import CORPORA
from callmood.inference import EmotionModel
from callmood.models.package import read_model_metadata
from callmood.training.data import decode_clip, map_labels, trim_silence

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="model package folders")
    parser.add_argument("--corpus", default="ravdess", choices=sorted(CORPORA))
    parser.add_argument("--path", type=Path, help="corpus folder (default ../shared/data/NAME)")
    parser.add_argument("--gains", type=float, nargs="+", default=[-12, -6, 0, 6, 12])
    parser.add_argument("--limit", type=int, default=400, help="clips used (every k-th)")
    args = parser.parse_args()
    path = args.path or REPO_ROOT.parent / "shared" / "data" / args.corpus

    models = [EmotionModel.load(m) for m in args.models]
    labels = models[0].labels
    rows, names = map_labels(CORPORA[args.corpus](path), "iemocap4")
    kept = [(r, n) for r, n in zip(rows, names, strict=True) if n in labels]
    step = max(1, len(kept) // args.limit)
    kept = kept[::step]
    print(f"{args.corpus}: {len(kept)} clips, {', '.join(labels)}\n")
    audio = [decode_clip(r.path, models[0].sample_rate) for r, _ in kept]
    truth = np.array([labels.index(n) for _, n in kept])

    header = "| model | gain dB | UA % | changed vs 0 dB % | " + " | ".join(labels) + " |"
    print(header)
    print("|" + "---|" * (4 + len(labels)))
    for directory, model in zip(args.models, models, strict=True):
        # Each model hears the clips as it was trained on them.
        trim_db = read_model_metadata(directory).get("trim_silence_db")
        clips = (
            audio
            if trim_db is None
            else [trim_silence(a, model.sample_rate, trim_db) for a in audio]
        )
        answers = {}
        for gain in args.gains:
            scale = 10 ** (gain / 20)
            answers[gain] = np.array(
                [
                    model.predict(np.clip(clip * scale, -1, 1)[None].astype(np.float32))[0].argmax()
                    for clip in clips
                ]
            )
        reference = answers.get(0.0)
        for gain, predicted in answers.items():
            recall = [np.mean(predicted[truth == k] == k) for k in range(len(labels))]
            changed = "" if reference is None else f"{100 * np.mean(predicted != reference):.1f}"
            shares = [f"{100 * np.mean(predicted == k):.1f}" for k in range(len(labels))]
            print(
                f"| {directory.name} | {gain:+.0f} | {100 * np.mean(recall):.1f} | {changed} | "
                + " | ".join(shares)
                + " |"
            )


if __name__ == "__main__":
    main()
