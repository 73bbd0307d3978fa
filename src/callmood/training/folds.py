"""Speaker-independent splits: leave-one-group-out, grouped k-fold and the validation hold-out.

A *group* is the unit no split may cut (a speaker, or an IEMOCAP session): every
clip of a group lands on the same side. Assignments are deterministic, so a
published number can be reproduced fold by fold.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from callmood.errors import CallmoodError


class FoldError(CallmoodError):
    """A split that cannot be made (too few groups for the folds asked for, ...)."""


@dataclass(frozen=True)
class Fold:
    """One train/test split of a manifest, as row indices.

    Attributes
    ----------
    name
        Human-readable name, e.g. ``"fold 1"`` or ``"emodb:03"``.
    test_groups
        The groups tested in this fold; none of them occurs in `train_indices`.
    validation_indices
        A validation set fixed by the fold itself (a whole inner corpus); None = draw
        validation speakers from `train_indices` with `validation_split`.
    """

    name: str
    train_indices: np.ndarray
    test_indices: np.ndarray
    test_groups: tuple[str, ...]
    validation_indices: np.ndarray | None = None


def natural_key(text: str) -> tuple:
    """Sort key that orders ``"ravdess:2"`` before ``"ravdess:10"``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _sorted_groups(groups: Sequence[str]) -> list[str]:
    return sorted(set(groups), key=natural_key)


def _folds_from_test_groups(
    groups: np.ndarray, test_group_sets: list[list[str]], names: list[str]
) -> list[Fold]:
    folds = []
    for name, test_groups in zip(names, test_group_sets, strict=True):
        in_test = np.isin(groups, test_groups)
        folds.append(
            Fold(
                name=name,
                train_indices=np.flatnonzero(~in_test),
                test_indices=np.flatnonzero(in_test),
                test_groups=tuple(test_groups),
            )
        )
    return folds


def leave_one_group_out(groups: Sequence[str]) -> list[Fold]:
    """One fold per group, in natural order (EmoDB: 10 speakers; IEMOCAP: 5 sessions).

    Parameters
    ----------
    groups
        The group of each manifest row.

    Raises
    ------
    FoldError
        With fewer than two groups.
    """
    array = np.asarray(groups, dtype=object)
    distinct = _sorted_groups(groups)
    if len(distinct) < 2:
        raise FoldError(f"leave-one-group-out needs at least 2 groups, found {len(distinct)}")
    return _folds_from_test_groups(array, [[group] for group in distinct], distinct)


def leave_one_corpus_out(
    groups: Sequence[str], corpora: Sequence[str], *, hold_out_corpus: bool = False
) -> list[Fold]:
    """One fold per corpus: train on every other corpus, test on all of this one.

    Groups (speakers) are globally unique, so no speaker is on both sides either; a group
    found in two corpora is refused rather than split.

    With `hold_out_corpus`, every clip of one training corpus is the fold's validation set
    (early stopping, best epoch) and is not trained on: the corpus after the test corpus in
    natural order, wrapping around. That is deterministic and uses each corpus as the inner
    validation corpus exactly once, whatever the corpus sizes.

    Raises
    ------
    FoldError
        With fewer than two corpora (three with `hold_out_corpus`), or a group in more
        than one corpus.
    """
    corpora = np.asarray(corpora, dtype=object)
    groups = np.asarray(groups, dtype=object)
    names = _sorted_groups(corpora)
    if len(names) < 2:
        raise FoldError(f"leave-one-corpus-out needs at least 2 corpora, found {len(names)}")
    if hold_out_corpus and len(names) < 3:
        raise FoldError(
            "validation.hold_out: corpus needs at least 3 corpora (one tested, one validating, "
            f"one or more trained on), found {len(names)}: {', '.join(names)}; "
            "use hold_out: speakers"
        )
    for group in set(groups):
        found = set(corpora[groups == group])
        if len(found) > 1:
            raise FoldError(f"group {group!r} occurs in corpora {', '.join(sorted(found))}")
    folds = []
    for position, corpus in enumerate(names):
        validation_corpus = names[(position + 1) % len(names)] if hold_out_corpus else None
        trained = [n for n in names if n not in (corpus, validation_corpus)]
        name = f"{'+'.join(trained)} -> {corpus}"
        if validation_corpus is not None:
            name = f"{'+'.join(trained)} (validation {validation_corpus}) -> {corpus}"
        folds.append(
            Fold(
                name=name,
                train_indices=np.flatnonzero(np.isin(corpora, trained)),
                test_indices=np.flatnonzero(corpora == corpus),
                test_groups=tuple(_sorted_groups(groups[corpora == corpus])),
                validation_indices=(
                    np.flatnonzero(corpora == validation_corpus)
                    if validation_corpus is not None
                    else None
                ),
            )
        )
    return folds


def _groups_by_corpus(groups: Sequence[str], corpora: Sequence[str] | None) -> dict[str, list[str]]:
    """Each corpus's distinct groups in natural order (one unnamed corpus without `corpora`)."""
    corpus_of: dict[str, str] = {}
    for i, group in enumerate(groups):
        corpus_of.setdefault(group, corpora[i] if corpora is not None else "")
    by_corpus: dict[str, list[str]] = {}
    for group in _sorted_groups(groups):
        by_corpus.setdefault(corpus_of[group], []).append(group)
    return by_corpus


def grouped_kfold(
    groups: Sequence[str], num_folds: int, *, corpora: Sequence[str] | None = None
) -> list[Fold]:
    """Speaker-grouped k-fold with a fixed, documented assignment.

    Within each corpus (`corpora` gives each row's corpus), the groups are
    sorted naturally and cut into `num_folds` consecutive chunks of near-equal
    size (larger chunks first); fold *i* tests chunk *i* of every corpus. For
    RAVDESS with 6 folds that is actors 1-4, 5-8, ..., 21-24: two male and two
    female actors per fold.

    Raises
    ------
    FoldError
        When `num_folds` < 2 or a corpus has fewer groups than folds.
    """
    if num_folds < 2:
        raise FoldError(f"k-fold needs at least 2 folds, got {num_folds}")
    array = np.asarray(groups, dtype=object)
    by_corpus = _groups_by_corpus(groups, corpora)
    test_group_sets: list[list[str]] = [[] for _ in range(num_folds)]
    for corpus, corpus_groups in by_corpus.items():
        if len(corpus_groups) < num_folds:
            raise FoldError(
                f"{num_folds} folds asked for but corpus {corpus or '(unnamed)'} has only "
                f"{len(corpus_groups)} groups (speakers/sessions)"
            )
        for fold_index, chunk in enumerate(
            np.array_split(np.arange(len(corpus_groups)), num_folds)
        ):
            test_group_sets[fold_index].extend(corpus_groups[i] for i in chunk)
    names = [f"fold {i + 1}" for i in range(num_folds)]
    return _folds_from_test_groups(array, test_group_sets, names)


def validation_split(
    groups: Sequence[str],
    *,
    fraction: float,
    min_groups: int = 1,
    seed: int = 0,
    corpora: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole groups of a training set for validation (early stopping).

    From each corpus (`corpora` gives each row's corpus),
    ``max(min_groups, round(fraction * groups))`` groups are drawn with a seeded
    generator, but at least one group always stays in training.

    Returns
    -------
    (train_indices, validation_indices)
        Row indices into `groups`; validation is empty when `fraction` is 0.
    """
    array = np.asarray(groups, dtype=object)
    if fraction <= 0:
        return np.arange(len(array)), np.array([], dtype=np.int64)
    rng = np.random.default_rng(seed)
    by_corpus = _groups_by_corpus(groups, corpora)
    held_out: list[str] = []
    for corpus_groups in by_corpus.values():
        count = max(min_groups, round(fraction * len(corpus_groups)))
        count = min(count, len(corpus_groups) - 1)
        if count <= 0:
            continue
        chosen = rng.choice(len(corpus_groups), size=count, replace=False)
        held_out.extend(corpus_groups[i] for i in sorted(chosen))
    if not held_out:
        raise FoldError(
            "cannot hold out a validation group: every corpus has a single group; "
            "set validation.fraction to 0"
        )
    in_validation = np.isin(array, held_out)
    return np.flatnonzero(~in_validation), np.flatnonzero(in_validation)
