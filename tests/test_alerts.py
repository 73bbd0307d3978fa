"""Alert rules: validation of rule files; each rule kind on constructed probabilities."""

from __future__ import annotations

import pytest

from callmood.alerts import DEFAULT_RULES, RuleEngine, RulesError, RuleSet
from callmood.results import WindowResult

LABELS = ("neutral", "happy", "sad", "angry")


def window(start, angry=0.0, sad=0.0, speaker="customer", length=3.0, peak_dbfs=-20.0):
    rest = 1.0 - angry - sad
    probabilities = {"neutral": rest, "happy": 0.0, "sad": sad, "angry": angry}
    emotion = max(probabilities, key=probabilities.get)
    return WindowResult(
        speaker=speaker,
        start=start,
        end=start + length,
        emotion=emotion,
        probabilities=probabilities,
        confidence=probabilities[emotion],
        peak_dbfs=peak_dbfs,
        rms_dbfs=peak_dbfs - 12,
    )


def run(rules, windows=(), speech=None, end=None, speakers=("customer", "agent")):
    engine = RuleEngine(
        RuleSet.from_dict({"rules": rules}),
        labels=LABELS,
        speakers=list(speakers),
        analyzed_speakers=["customer"],
    )
    events = []
    for w in windows:
        events += engine.on_window(w)
    for speaker, stretches in (speech or {}).items():
        events += engine.on_speech(speaker, stretches, end)
    end = end if end is not None else max((w.end for w in windows), default=0.0)
    events += engine.finish(end)
    return engine.alerts, events


SUSTAINED = {
    "name": "angry",
    "kind": "sustained",
    "emotion": "angry",
    "threshold": 0.6,
    "min_seconds": 5,
    "cooldown_seconds": 0,
}


def test_sustained_anger_spans_the_angry_speech_is_confirmed_after_enough_and_closes():
    probs = [0.1, 0.7, 0.8, 0.9, 0.8, 0.2, 0.1]  # windows 3 s long, 1 s hop
    alerts, events = run([SUSTAINED], [window(i, angry=p) for i, p in enumerate(probs)])
    assert len(alerts) == 1
    alert = alerts[0]
    # The run starts at 1 s (where the alert opens); 5 s of speech are covered by the
    # window ending at 6 s, which confirms it: the stream sends the opening then.
    assert alert.opened_at == pytest.approx(1.0)
    assert alert.confirmed_at == pytest.approx(6.0)
    assert events[0].at == pytest.approx(6.0)
    assert alert.id == "angry:customer:6000"
    assert alert.closed_at == pytest.approx(7.0)  # end of the last angry window (4..7)
    assert alert.value == pytest.approx(0.9)
    assert [e.event for e in events] == ["alert_open", "alert_close"]
    assert all(e.value >= 0.6 for e in alert.evidence)


def test_sustained_anger_below_threshold_or_too_short_does_not_fire():
    below = [window(i, angry=0.55) for i in range(20)]
    assert run([SUSTAINED], below)[0] == []
    short = [window(0, angry=0.9), window(1, angry=0.9), window(2, angry=0.1)]  # 4 s of speech
    assert run([SUSTAINED], short)[0] == []


def test_cooldown_keeps_a_rule_quiet_after_its_alert_closes():
    def bursts(gap):
        # Two angry bursts of 6 windows, `gap` seconds of neutral windows apart.
        first = [window(i, angry=0.9) for i in range(6)]
        calm = [window(6 + i, angry=0.0) for i in range(gap)]
        second = [window(6 + gap + i, angry=0.9) for i in range(6)]
        return first + calm + second

    rule = {**SUSTAINED, "cooldown_seconds": 30}
    assert len(run([rule], bursts(gap=5))[0]) == 1
    assert len(run([rule], bursts(gap=40))[0]) == 2
    assert len(run([{**SUSTAINED, "cooldown_seconds": 0}], bursts(gap=5))[0]) == 2


FREQUENCY = {
    "name": "outbursts",
    "kind": "frequency",
    "emotion": "angry",
    "threshold": 0.5,
    "min_windows": 3,
    "within_seconds": 20,
    "cooldown_seconds": 0,
}


def test_frequency_fires_on_enough_angry_windows_within_the_time_span():
    spikes = [window(t, angry=0.8 if t in (0, 8, 16) else 0.1, length=1) for t in range(30)]
    alerts, _ = run([FREQUENCY], spikes)
    assert len(alerts) == 1
    # Confirmed by the third spike (ending at 17 s); it began with the first one.
    assert (alerts[0].opened_at, alerts[0].confirmed_at) == (0.0, pytest.approx(17.0))
    assert len(alerts[0].evidence) == 3


def test_frequency_does_not_fire_when_spikes_are_spread_out_or_weak():
    spread = [window(t, angry=0.8 if t in (0, 15, 30) else 0.1, length=1) for t in range(40)]
    assert run([FREQUENCY], spread)[0] == []
    weak = [window(t, angry=0.45, length=1) for t in range(40)]
    assert run([FREQUENCY], weak)[0] == []


SHIFT = {
    "name": "upset",
    "kind": "shift",
    "rise": 0.3,
    "part_seconds": 10,
    "min_windows": 3,
    "cooldown_seconds": 0,
}


def test_shift_fires_when_negativity_rises_from_the_start_to_the_latest_part():
    # Negativity (angry + sad) 0.1 for the first 20 s, then 0.6.
    windows = [
        window(t, angry=0.1 if t < 20 else 0.4, sad=0.0 if t < 20 else 0.2) for t in range(40)
    ]
    alerts, _ = run([SHIFT], windows)
    assert len(alerts) == 1
    assert alerts[0].value > 0.3
    baseline, latest = alerts[0].evidence
    assert baseline.value == pytest.approx(0.1)
    assert latest.value - baseline.value > 0.29


def test_shift_does_not_fire_on_a_small_rise_or_a_fall():
    small = [window(t, angry=0.1 if t < 20 else 0.3) for t in range(40)]
    assert run([SHIFT], small)[0] == []
    falling = [window(t, angry=0.8 if t < 20 else 0.1) for t in range(40)]
    assert run([SHIFT], falling)[0] == []


def test_loudness_fires_on_windows_at_or_above_the_peak_level():
    rule = {"name": "loud", "kind": "loudness", "peak_dbfs": -3, "cooldown_seconds": 0}
    levels = [-20, -20, -2, -1, -20, -20]
    alerts, _ = run([rule], [window(t * 3, peak_dbfs=lv) for t, lv in enumerate(levels)])
    assert len(alerts) == 1
    assert alerts[0].opened_at == pytest.approx(6.0)
    assert alerts[0].closed_at == pytest.approx(12.0)
    assert alerts[0].value == pytest.approx(-1.0)
    assert run([rule], [window(t, peak_dbfs=-3.5) for t in range(10)])[0] == []


SILENCE = {"name": "dead_air", "kind": "silence", "speaker": "any", "min_seconds": 10}


def test_silence_fires_on_a_long_gap_when_nobody_speaks():
    speech = {"customer": [(0, 5), (30, 40)], "agent": [(6, 8), (41, 45)]}
    alerts, events = run([SILENCE], speech=speech, end=50)
    assert len(alerts) == 1
    gap = alerts[0]
    # Silent from 8 s; 10 s later the rule is met; speech returns at 30 s.
    assert (gap.opened_at, gap.confirmed_at, gap.closed_at) == (
        pytest.approx(8.0),
        pytest.approx(18.0),
        pytest.approx(30.0),
    )
    assert gap.evidence[0].value == pytest.approx(22.0)


def test_silence_is_not_raised_for_short_gaps_or_a_call_without_speech():
    speech = {"customer": [(0, 5), (12, 20)], "agent": [(21, 30)]}
    assert run([SILENCE], speech=speech, end=35)[0] == []
    assert run([SILENCE], speech={"customer": [], "agent": []}, end=300)[0] == []


def test_silence_of_one_speaker_ignores_the_other_speaker():
    rule = {**SILENCE, "speaker": "customer"}
    speech = {"customer": [(0, 5), (30, 40)], "agent": [(5, 29)]}
    assert len(run([rule], speech=speech, end=40)[0]) == 1
    assert run([SILENCE], speech=speech, end=40)[0] == []


def test_agent_rules_see_no_windows_unless_the_agent_is_analysed():
    rule = {**SUSTAINED, "speaker": "agent"}
    windows = [window(i, angry=0.9, speaker="agent") for i in range(10)]
    assert run([rule], windows)[0] == []


def test_rules_file_errors_name_the_file_the_rule_and_the_field(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - name: too_sure\n    kind: sustained\n    emotion: angry\n"
        "    threshold: 1.5\n    min_seconds: 4\n"
    )
    with pytest.raises(RulesError) as error:
        RuleSet.from_yaml(path)
    message = str(error.value)
    assert str(path) in message and "too_sure" in message and "threshold" in message

    path.write_text("rules:\n  - name: x\n    kind: nonsense\n")
    with pytest.raises(RulesError, match="kind"):
        RuleSet.from_yaml(path)
    path.write_text("rules: [unclosed\n")
    with pytest.raises(RulesError, match="not valid YAML"):
        RuleSet.from_yaml(path)
    with pytest.raises(RulesError, match="does not exist"):
        RuleSet.from_yaml(tmp_path / "missing.yaml")


def test_duplicate_rule_names_and_unknown_emotions_are_rejected():
    with pytest.raises(RulesError, match="unique"):
        RuleSet.from_dict({"rules": [SUSTAINED, SUSTAINED]})
    with pytest.raises(RulesError, match="furious"):
        run([{**SUSTAINED, "emotion": "furious"}], [window(0)])


def test_default_rules_cover_every_kind_and_load_for_any_label_set():
    kinds = {rule.kind for rule in DEFAULT_RULES.rules}
    assert kinds == {"sustained", "frequency", "shift", "loudness", "silence"}
    engine = RuleEngine(
        DEFAULT_RULES,
        labels=("neutral", "happy"),
        speakers=["customer"],
        analyzed_speakers=["customer"],
        strict=False,
    )
    assert engine.skipped  # the anger rules cannot apply to a model without 'angry'
