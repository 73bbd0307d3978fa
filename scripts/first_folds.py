"""Quick look at a recipe change: train and test only the first folds of a protocol.

The comparisons under "What was tried" in docs/results.md were made this way: a
config, optionally with some top-level keys replaced (JSON), trained on the
training speakers of each of the first N folds (no validation hold-out, as the
configs say) and tested on that fold's speakers. It looks at test folds, so its
numbers choose what to cross-validate in full with `callmood evaluate`; they are
not results.

Usage:
  python scripts/first_folds.py configs/experiments/emodb7_medium.yaml \\
      --override '{"speaker_normalization": true}' --folds 4 --protocol loso
  python scripts/first_folds.py configs/experiments/ravdess8_medium.yaml --protocol kfold \\
      --override '{"speaker_normalization": true, "trim_silence_db": 35}' --folds 2
  python scripts/first_folds.py configs/experiments/emodb7_speakernorm_branchloss.yaml \\
      --folds 3 --branches

`--branches` also prints the UA of each branch alone (its slice of the classifier,
`ParallelCNNTransformer.branch_logits`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from callmood.training.config import load_training_config
from callmood.training.data import ClipSet
from callmood.training.evaluate import prepare_clip_set
from callmood.training.folds import grouped_kfold, leave_one_group_out
from callmood.training.loop import evaluate_clips, model_speaker_statistics, train_model
from callmood.training.metrics import classification_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a training config")
    parser.add_argument("--override", default="{}", help="JSON object of top-level keys to set")
    parser.add_argument("--folds", type=int, default=5, help="how many of the first folds to run")
    parser.add_argument("--skip", type=int, default=0, help="start after this many folds")
    parser.add_argument("--protocol", choices=("loso", "kfold"), default="loso")
    parser.add_argument("--kfolds", type=int, default=6, help="k of the kfold protocol")
    parser.add_argument("--branches", action="store_true", help="also each branch's UA alone")
    args = parser.parse_args()
    config = load_training_config(args.config)
    config = config.model_validate({**config.model_dump(), **json.loads(args.override)})
    started = time.perf_counter()
    clips = prepare_clip_set(config)
    if args.protocol == "loso":
        folds = leave_one_group_out(clips.groups)
    else:
        folds = grouped_kfold(clips.groups, args.kfolds, corpora=clips.corpora)
    uas = []
    for fold in folds[args.skip : args.skip + args.folds]:
        result = train_model(config, clips, fold.train_indices, np.array([], dtype=np.int64))
        metrics = evaluate_clips(result.model, clips, fold.test_indices)
        uas.append(metrics.unweighted_average_recall)
        print(
            f"{fold.name}: UA {100 * metrics.unweighted_average_recall:.1f} %, "
            f"WA {100 * metrics.weighted_accuracy:.1f} %, "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        if args.branches:
            print(f"  branches alone: {branch_uas(result.model, clips, fold.test_indices)}")
    print(f"mean UA {100 * np.mean(uas):.1f} % over {len(uas)} folds, {args.override}")


def branch_uas(model: torch.nn.Module, clips: ClipSet, indices: np.ndarray) -> str:
    """UA of each branch's own logits on whole clips `indices`: "cnn1 60.1 %, ..."."""
    statistics = model_speaker_statistics(model, clips)
    guesses = []
    with torch.no_grad():
        for i in indices:
            mine = None if statistics is None else statistics[i : i + 1]
            parts = model.branches(clips.features[i][None], speaker_statistics=mine)
            guesses.append([logits[0].argmax().item() for logits in model.branch_logits(parts)])
    names = ["cnn1", "cnn2", "transformer", "statistics"]
    texts = []
    for branch, predicted in enumerate(np.array(guesses).T):
        metrics = classification_metrics(clips.targets[indices], predicted, clips.classes)
        texts.append(f"{names[branch]} {100 * metrics.unweighted_average_recall:.1f} %")
    return ", ".join(texts)


if __name__ == "__main__":
    main()
