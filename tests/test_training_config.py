"""Training configs: defaults live in code, and a bad config is a clear error before any work."""

from pathlib import Path

import pytest

from callmood.training.config import (
    TrainingConfigError,
    load_training_config,
    parse_training_config,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_minimal_config_takes_every_other_setting_from_the_code_defaults(tmp_path):
    (tmp_path / "m.csv").write_text("")
    config = load_training_config(write(tmp_path, "manifests: [m.csv]\n"))

    assert config.label_set == "iemocap4"
    assert config.optimizer.learning_rate == 1e-3
    assert config.class_balance == "weighted_loss"
    assert config.manifests == [tmp_path / "m.csv"]  # relative to the config's folder


def test_unknown_key_is_named_in_the_error(tmp_path):
    path = write(tmp_path, "manifests: [m.csv]\noptimizer: {learning_rat: 0.1}\n")
    with pytest.raises(TrainingConfigError, match=r"unknown key `optimizer.learning_rat`"):
        load_training_config(path, check_paths=False)


def test_wrong_type_names_the_key_and_the_file(tmp_path):
    path = write(tmp_path, "manifests: [m.csv]\nepochs: many\n")
    with pytest.raises(TrainingConfigError, match=r"config.yaml.*`epochs`"):
        load_training_config(path, check_paths=False)


def test_out_of_range_value_is_rejected():
    with pytest.raises(TrainingConfigError, match="augmentation.telephone.probability"):
        parse_training_config(
            {"manifests": ["m.csv"], "augmentation": {"telephone": {"probability": 1.5}}}
        )


def test_unknown_class_balance_lists_the_choices():
    with pytest.raises(TrainingConfigError, match="weighted_loss.*balanced_sampler"):
        parse_training_config({"manifests": ["m.csv"], "class_balance": "oversample"})


def test_missing_manifest_is_reported_with_its_path(tmp_path):
    path = write(tmp_path, "manifests: [nowhere.csv]\n")
    with pytest.raises(TrainingConfigError, match=r"manifest not found: .*nowhere.csv"):
        load_training_config(path)


def test_unknown_corpus_and_missing_corpus_folder_are_errors(tmp_path):
    with pytest.raises(TrainingConfigError, match="unknown corpus `voxceleb`"):
        load_training_config(write(tmp_path, "corpora: [{name: voxceleb, path: .}]\n"))
    with pytest.raises(TrainingConfigError, match="corpus folder for `emodb` not found"):
        load_training_config(write(tmp_path, "corpora: [{name: emodb, path: no/such/dir}]\n"))


def test_config_without_data_is_an_error(tmp_path):
    with pytest.raises(TrainingConfigError, match="corpora.*manifests"):
        load_training_config(write(tmp_path, "epochs: 3\n"), check_paths=False)


def test_not_yaml_and_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(TrainingConfigError, match="not valid YAML"):
        load_training_config(write(tmp_path, "epochs: [1, 2\n"))
    with pytest.raises(TrainingConfigError, match="config file not found"):
        load_training_config(tmp_path / "absent.yaml")


def test_classes_must_belong_to_the_label_set(tmp_path):
    (tmp_path / "m.csv").write_text("")
    path = write(tmp_path, "manifests: [m.csv]\nlabel_set: iemocap4\nclasses: [angry, bored]\n")
    with pytest.raises(TrainingConfigError, match="classes"):
        load_training_config(path)


def test_bad_feature_settings_are_config_errors():
    config = parse_training_config({"manifests": ["m.csv"], "features": {"kind": "wavelets"}})
    with pytest.raises(TrainingConfigError, match="features"):
        config.feature_config()


@pytest.mark.parametrize(
    "path", sorted((REPO_ROOT / "configs").glob("**/*.yaml")), ids=lambda p: p.name
)
def test_shipped_configs_are_valid(path):
    config = load_training_config(path, check_paths=False)
    config.feature_config()
    # Paths in shipped configs are relative to the project root, not the working directory.
    for corpus in config.corpora:
        assert corpus.path.is_absolute()
