"""The parallel CNN + transformer network: shapes for any clip length, normalisation, options."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from callmood.errors import CallmoodError
from callmood.features import FeatureConfig, FeatureExtractor, seconds_to_frames
from callmood.models.parallel_cnn_transformer import (
    ModelConfig,
    ModelInputError,
    ParallelCNNTransformer,
)

torch.set_num_threads(1)


def _model(**overrides) -> ParallelCNNTransformer:
    torch.manual_seed(0)
    return ParallelCNNTransformer(ModelConfig(**overrides)).eval()


@pytest.mark.parametrize("seconds", [1.0, 3.0, 7.0])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_any_clip_length_gives_one_logit_row_per_clip(seconds, batch_size):
    frames = seconds_to_frames(seconds)
    features = torch.randn(batch_size, 40, frames)
    with torch.no_grad():
        logits = _model()(features)
    assert logits.shape == (batch_size, 8)
    assert torch.isfinite(logits).all()


def test_reference_config_has_about_a_quarter_million_parameters():
    # The published model has 248,488: its head read a flattened 3 s CNN map (2 x 512 + 40
    # inputs). Ours averages the CNN map over time (2 x 64 + 40 inputs), which removes
    # 8 x 896 = 7,168 head weights: 241,320 in all.
    assert _model().num_parameters() == 241_320


def test_logmel_input_sets_the_transformer_width():
    model = _model(num_features=64)
    with torch.no_grad():
        assert model(torch.randn(2, 64, 301)).shape == (2, 8)
    with pytest.raises(ModelInputError, match="num_features"):
        ModelConfig(num_features=66)  # not divisible by 4 heads


def test_normalisation_inside_the_model_standardises_each_feature():
    model = _model()
    features = torch.randn(3, 40, 301)
    mean = torch.linspace(-30, 30, 40)
    std = torch.linspace(0.5, 20, 40)
    with torch.no_grad():
        on_standard_input = model(features)
        model.set_normalization(mean, std)
        on_raw_input = model(features * std[:, None] + mean[:, None])
    torch.testing.assert_close(on_raw_input, on_standard_input, atol=1e-4, rtol=1e-4)
    state = model.state_dict()
    assert torch.equal(state["feature_mean"], mean) and torch.equal(state["feature_std"], std)


def test_normalisation_rejects_wrong_sizes_and_guards_zero_std():
    model = _model()
    with pytest.raises(ModelInputError, match="40"):
        model.set_normalization(torch.zeros(39), torch.ones(39))
    model.set_normalization(torch.zeros(40), torch.zeros(40))
    assert (model.feature_std > 0).all()


def test_transformer_branch_ignores_padding_given_lengths():
    model = _model()
    features = torch.randn(1, 40, 201)
    padded = torch.cat([features, torch.randn(1, 40, 100) * 50], dim=2)
    frames = torch.arange(padded.shape[2])
    with torch.no_grad():
        alone = model.transformer_branch(features, None)
        masked = model.transformer_branch(padded, (frames < 201 // 4)[None])
        logits = model(padded, lengths=torch.tensor([201]))
    torch.testing.assert_close(masked, alone, atol=1e-5, rtol=1e-5)
    assert logits.shape == (1, 8)


def test_padded_batch_with_lengths_is_close_to_clips_alone():
    model = _model()
    short = torch.randn(1, 40, 150)
    long = torch.randn(1, 40, 301)
    padded = torch.cat([torch.cat([short, torch.zeros(1, 40, 151)], dim=2), long])
    with torch.no_grad():
        batch = model(padded, lengths=torch.tensor([150, 301]))
        unmasked = model(padded)
        expected = torch.cat([model(short), model(long)])
    torch.testing.assert_close(batch[1], expected[1], atol=1e-5, rtol=1e-5)
    # Only the CNN's receptive field at the clip's end still sees the padding.
    assert (batch[0] - expected[0]).abs().max() < (unmasked[0] - expected[0]).abs().max()


@pytest.mark.parametrize(
    "options",
    [
        {"attention_pooling": True},
        {"statistics_branch": True},
        {"statistics_branch": True, "statistics_deltas": True},
        {"positional_encoding": "sinusoidal"},
        {"cnn_time_pool": "max"},
        {"cnn_dropout": 0.1, "transformer_dropout": 0.1, "transformer_layers": 2},
    ],
)
def test_options_build_and_train(options):
    model = _model(**options).train()
    features = torch.randn(4, 40, 250)
    loss = torch.nn.functional.cross_entropy(model(features), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        lengths = torch.tensor([250, 120, 64, 32])
        assert model.eval()(features, lengths=lengths).shape == (4, 8)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    model = _model()
    features = torch.randn(2, 40, 301)
    with torch.no_grad():
        assert torch.equal(model(features), model(features))
        model.train()
        assert not torch.equal(model(features), model(features))


@pytest.mark.parametrize(
    ("shape", "problem"),
    [((2, 40, 20), "at least 32"), ((2, 39, 301), r"\(batch, 40, frames\)"), ((40, 301), "shape")],
)
def test_unusable_feature_batches_are_clear_errors(shape, problem):
    with pytest.raises(CallmoodError, match=problem):
        _model()(torch.zeros(shape))


def test_lengths_must_give_one_frame_count_per_clip():
    with pytest.raises(ModelInputError, match="one entry"):
        _model()(torch.zeros(2, 40, 301), lengths=torch.tensor([301]))


def test_config_round_trips_and_rejects_unknown_options():
    config = ModelConfig(num_classes=4, attention_pooling=True, cnn_time_pool="max")
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ModelInputError, match="dropout_rate"):
        ModelConfig.from_dict({"dropout_rate": 0.2})
    with pytest.raises(ModelInputError, match="cnn_time_pool"):
        ModelConfig(cnn_time_pool="median")


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"transformer_heads": 0}, "transformer_heads"),
        ({"num_classes": "eight"}, "num_classes"),
        ({"statistics_branch": "yes"}, "statistics_branch"),
        ({"statistics_deltas": True}, "statistics_deltas needs statistics_branch"),
        ({"statistics_per_speaker": True}, "statistics_per_speaker needs statistics_branch"),
        ({"cnn_dropout": 1.5}, "cnn_dropout"),
        ({"cnn_channels": [16, 32]}, "cnn_channels"),
        ({"num_features": 20}, "num_features"),
        ({"attention_pooling": "yes"}, "attention_pooling"),
    ],
)
def test_invalid_model_config_names_the_field(values, named):
    with pytest.raises(ModelInputError, match=named):
        ModelConfig.from_dict(values)


def test_learns_to_tell_angry_from_neutral_on_real_clips(ravdess_dir):
    """A few real RAVDESS clips of one actor: the network must fit them (it learns at all)."""
    # Statement 01, both repetitions: 2 neutral, 4 angry (two intensities).
    paths = sorted((ravdess_dir / "Actor_03").glob("03-01-0[15]-0[12]-01-*.flac"))
    labels = torch.tensor([0 if path.name.split("-")[2] == "01" else 1 for path in paths])
    assert len(paths) == 6 and labels.sum() == 4
    clip_samples = 32000  # 2 s
    waveforms = np.zeros((len(paths), clip_samples), dtype=np.float32)
    for row, path in enumerate(paths):
        samples, _ = soundfile.read(path, dtype="float32")
        samples = samples[len(samples) // 2 - clip_samples // 2 :][:clip_samples]  # the middle
        waveforms[row, : len(samples)] = samples
    with torch.no_grad():
        features = FeatureExtractor(FeatureConfig())(torch.from_numpy(waveforms))
    torch.manual_seed(0)
    model = ParallelCNNTransformer(ModelConfig(num_classes=2))
    model.set_normalization(features.mean(dim=(0, 2)), features.std(dim=(0, 2)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    accuracy = 0.0
    for step in range(60):
        model.train()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(features), labels)
        loss.backward()
        optimizer.step()
        if step % 5 == 4:
            with torch.no_grad():
                predicted = model.eval()(features).argmax(dim=1)
            accuracy = (predicted == labels).float().mean().item()
            if accuracy == 1.0:
                break
    assert accuracy == 1.0


def test_statistics_branch_ignores_padding():
    model = _model(statistics_branch=True).eval()
    clip = torch.randn(1, 40, 120)
    padded = torch.cat([clip, torch.zeros(1, 40, 180)], dim=2)
    from callmood.models.parallel_cnn_transformer import time_statistics

    with torch.no_grad():
        alone = time_statistics(clip)
        masked = time_statistics(padded, torch.arange(300)[None] < 120)
    torch.testing.assert_close(masked, alone)
    assert model.classifier.in_features == _model().classifier.in_features + 80


def test_statistics_deltas_are_the_spread_of_frame_changes_without_padding():
    from callmood.models.parallel_cnn_transformer import time_statistics

    clip = torch.randn(2, 40, 120)
    padded = torch.cat([clip, torch.full((2, 40, 180), 7.0)], dim=2)
    with torch.no_grad():
        alone = time_statistics(clip, deltas=True)
        masked = time_statistics(padded, torch.arange(300)[None] < 120, deltas=True)
    torch.testing.assert_close(masked, alone)
    expected = (clip[..., 1:] - clip[..., :-1]).std(-1, unbiased=False)
    torch.testing.assert_close(alone[:, 80:], expected, atol=1e-4, rtol=1e-4)
    with_deltas = _model(statistics_branch=True, statistics_deltas=True)
    assert with_deltas.classifier.in_features == _model().classifier.in_features + 120


def test_statistics_per_speaker_are_standardised_with_the_speakers_usual_values():
    from callmood.models.parallel_cnn_transformer import time_statistics

    model = _model(statistics_branch=True, statistics_per_speaker=True).eval()
    clips = torch.randn(3, 40, 200)
    with pytest.raises(ModelInputError, match="speaker_statistics of shape \\(3, 2, 80\\)"):
        model(clips)
    values = time_statistics(clips)
    usual = torch.stack([values.mean(0), values.std(0)])[None].expand(3, 2, 80)
    with torch.no_grad():
        logits = model(clips, speaker_statistics=usual)
        # The clip's statistics are read against the speaker's usual values.
        shifted = usual.clone()
        shifted[:, 0] += 1.0
        assert not torch.allclose(model(clips, speaker_statistics=shifted), logits)
    assert logits.shape == (3, model.config.num_classes)
    with pytest.raises(ModelInputError, match="without statistics_per_speaker"):
        _model(statistics_branch=True)(clips, speaker_statistics=usual)


def test_branch_logits_add_up_to_the_joined_logits():
    model = _model(statistics_branch=True, statistics_deltas=True)
    features = torch.randn(3, 40, 150)
    with torch.no_grad():
        parts = model.branches(features)
        branch_logits = model.branch_logits(parts)
        joined = model(features)
    assert [p.shape[1] for p in parts] == [64, 64, 40, 120]
    # Each branch's logits carry the bias once; the joined logits carry it once in total.
    extra_bias = (len(parts) - 1) * model.classifier.bias
    torch.testing.assert_close(sum(branch_logits) - extra_bias, joined)
