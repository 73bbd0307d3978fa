"""Label names, corpus label maps and named label sets."""

from __future__ import annotations

import pytest

from callmood.errors import CallmoodError
from callmood.labels import (
    CORPUS_LABEL_MAPS,
    EMOTIONS,
    LABEL_SETS,
    LabelError,
    canonical_label,
    from_corpus_label,
    order_labels,
    to_label_set,
)


def test_iemocap4_is_the_standard_four_classes_in_order():
    assert LABEL_SETS["iemocap4"] == ("neutral", "happy", "sad", "angry")


def test_iemocap4_merges_excited_into_happy_and_calm_into_neutral():
    assert to_label_set("excited", "iemocap4") == "happy"
    assert to_label_set("happy", "iemocap4") == "happy"
    assert to_label_set("calm", "iemocap4") == "neutral"
    assert to_label_set("angry", "iemocap4") == "angry"


@pytest.mark.parametrize(
    "label", ["frustrated", "unknown", "surprised", "fearful", "other", "bored"]
)
def test_iemocap4_drops_classes_outside_the_protocol(label):
    assert to_label_set(label, "iemocap4") is None


def test_sets_that_hold_a_label_keep_it_instead_of_merging():
    assert to_label_set("calm", "ravdess8") == "calm"
    assert to_label_set("excited", "iemocap6") == "excited"


def test_every_label_set_and_corpus_map_uses_canonical_names_only():
    for classes in LABEL_SETS.values():
        assert set(classes) <= set(EMOTIONS)
        assert len(set(classes)) == len(classes)
    for corpus_map in CORPUS_LABEL_MAPS.values():
        assert set(corpus_map.values()) <= set(EMOTIONS)


def test_each_corpus_map_covers_every_code_of_its_corpus():
    assert set(CORPUS_LABEL_MAPS["iemocap"]) == {
        "neu", "hap", "exc", "sad", "ang", "fru", "sur", "fea", "dis", "oth", "xxx"
    }  # fmt: skip
    assert set(CORPUS_LABEL_MAPS["ravdess"]) == {f"0{n}" for n in range(1, 9)}
    assert set(CORPUS_LABEL_MAPS["emodb"]) == set("WLEAFTN")
    assert set(CORPUS_LABEL_MAPS["cremad"]) == {"ANG", "DIS", "FEA", "HAP", "NEU", "SAD"}
    assert set(CORPUS_LABEL_MAPS["savee"]) == {"a", "d", "f", "h", "n", "sa", "su"}
    assert CORPUS_LABEL_MAPS["tess"]["ps"] == "surprised"


def test_each_corpus_maps_into_its_own_label_set_without_loss():
    for corpus, set_name in [("ravdess", "ravdess8"), ("emodb", "emodb7"), ("cremad", "cremad6")]:
        mapped = {to_label_set(label, set_name) for label in CORPUS_LABEL_MAPS[corpus].values()}
        assert mapped == set(LABEL_SETS[set_name])
    for corpus in ("tess", "savee"):
        mapped = {to_label_set(label, "ekman7") for label in CORPUS_LABEL_MAPS[corpus].values()}
        assert mapped == set(LABEL_SETS["ekman7"])


def test_corpus_codes_map_to_canonical_names():
    assert from_corpus_label("iemocap", "exc") == "excited"
    assert from_corpus_label("iemocap", "xxx") == "unknown"
    assert from_corpus_label("ravdess", "02") == "calm"
    assert from_corpus_label("emodb", "L") == "bored"
    assert from_corpus_label("savee", "sa") == "sad"


def test_unknown_corpus_code_is_a_clear_error_listing_the_codes():
    with pytest.raises(LabelError, match=r"ravdess: unknown label code '09'.*01"):
        from_corpus_label("ravdess", "09")


def test_user_spellings_become_canonical_names():
    assert canonical_label("Anger") == "angry"
    assert canonical_label(" happiness ") == "happy"
    assert canonical_label("NEUTRAL") == "neutral"
    assert canonical_label("fear") == "fearful"


def test_unknown_label_error_lists_the_allowed_labels_and_is_a_callmood_error():
    with pytest.raises(CallmoodError) as caught:
        canonical_label("hangry")
    assert "hangry" in str(caught.value)
    assert "neutral, calm, happy" in str(caught.value)


def test_unknown_label_set_error_names_the_known_sets():
    with pytest.raises(LabelError, match="iemocap4"):
        to_label_set("happy", "iemocap5")


def test_order_labels_follows_canonical_order():
    assert order_labels(["sad", "angry", "neutral", "sad"]) == ["neutral", "sad", "angry"]


def test_iemocap4_on_the_full_release_label_counts_keeps_the_standard_5531():
    # Utterances per code in IEMOCAP_full_release (10,039 in all).
    release_counts = {
        "xxx": 2507, "fru": 1849, "neu": 1708, "ang": 1103, "sad": 1084, "exc": 1041,
        "hap": 595, "sur": 107, "fea": 40, "oth": 3, "dis": 2,
    }  # fmt: skip
    assert sum(release_counts.values()) == 10039
    kept = {}
    for code, count in release_counts.items():
        label = to_label_set(from_corpus_label("iemocap", code), "iemocap4")
        if label is not None:
            kept[label] = kept.get(label, 0) + count
    assert kept == {"neutral": 1708, "happy": 595 + 1041, "sad": 1084, "angry": 1103}
    assert sum(kept.values()) == 5531
