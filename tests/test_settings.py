"""Settings come from code defaults, a YAML/TOML file, CALLMOOD_* env vars and overrides."""

from __future__ import annotations

import pytest

from callmood.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    import os

    for name in list(os.environ):
        if name.startswith("CALLMOOD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def test_defaults_listen_on_loopback_with_sqlite_in_the_data_dir(tmp_path):
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.data_dir == tmp_path / "xdg" / "callmood"
    assert settings.resolved_database_url == f"sqlite:///{settings.data_dir / 'callmood.db'}"
    assert settings.resolved_audio_dir == settings.data_dir / "audio"
    assert settings.max_upload_mb == 200 and settings.max_upload_bytes == 200_000_000
    assert settings.auth_disabled is False and settings.auth_token is None
    assert settings.webhook_urls == [] and settings.workers == 1


def test_yaml_file_sets_values_and_environment_wins_over_it(tmp_path, monkeypatch):
    config = tmp_path / "callmood.yaml"
    config.write_text("port: 9000\nworkers: 3\nwebhook_urls: [https://hooks.example/a]\n")
    monkeypatch.setenv("CALLMOOD_PORT", "9100")
    settings = load_settings(config)
    assert settings.port == 9100
    assert settings.workers == 3
    assert settings.webhook_urls == ["https://hooks.example/a"]


def test_command_line_overrides_win_over_environment_and_none_falls_through(monkeypatch):
    monkeypatch.setenv("CALLMOOD_PORT", "9100")
    assert load_settings(port=9200).port == 9200
    assert load_settings(port=None).port == 9100


def test_toml_file_with_a_callmood_table(tmp_path):
    config = tmp_path / "callmood.toml"
    config.write_text('[callmood]\ndatabase_url = "postgresql+psycopg://u:p@db/callmood"\n')
    assert load_settings(config).resolved_database_url == "postgresql+psycopg://u:p@db/callmood"


def test_config_file_named_by_environment(tmp_path, monkeypatch):
    config = tmp_path / "service.yaml"
    config.write_text("retention_days: 30\n")
    monkeypatch.setenv("CALLMOOD_CONFIG", str(config))
    assert load_settings().retention_days == 30


def test_webhook_urls_from_environment_as_comma_list(monkeypatch):
    monkeypatch.setenv("CALLMOOD_WEBHOOK_URLS", "https://a.example/x, https://b.example/y")
    monkeypatch.setenv("CALLMOOD_WEBHOOK_SECRET", "hush-hush")
    settings = load_settings()
    assert settings.webhook_urls == ["https://a.example/x", "https://b.example/y"]
    assert settings.webhook_secret.get_secret_value() == "hush-hush"
    assert "hush-hush" not in repr(settings)  # secrets stay out of logs


def test_invalid_value_names_the_setting_and_the_file(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("port: 70000\n")
    with pytest.raises(SettingsError, match=r"bad\.yaml.*port"):
        load_settings(config)


def test_a_short_hand_set_token_is_refused(monkeypatch):
    monkeypatch.setenv("CALLMOOD_AUTH_TOKEN", "letmein")
    with pytest.raises(SettingsError, match="auth_token must have at least 16 characters"):
        load_settings()
    monkeypatch.setenv("CALLMOOD_AUTH_TOKEN", "x" * 16)
    assert load_settings().auth_token.get_secret_value() == "x" * 16


def test_unknown_setting_is_refused(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("prot: 8000\n")
    with pytest.raises(SettingsError, match="prot"):
        load_settings(config)


def test_webhook_url_must_be_http(monkeypatch):
    monkeypatch.setenv("CALLMOOD_WEBHOOK_URLS", "ftp://nope")
    with pytest.raises(SettingsError, match="ftp://nope"):
        load_settings()


def test_missing_or_garbled_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "absent.yaml")
    garbled = tmp_path / "garbled.yaml"
    garbled.write_text("port: [8000\n")
    with pytest.raises(SettingsError, match="invalid config file"):
        load_settings(garbled)
    listing = tmp_path / "list.yaml"
    listing.write_text("- port\n")
    with pytest.raises(SettingsError, match="mapping"):
        load_settings(listing)


def test_retention_and_login_throttling_defaults_and_overrides(tmp_path, monkeypatch):
    settings = load_settings()
    assert settings.retention_days == 90 and settings.retention_interval_minutes == 60
    assert (settings.login_max_failures, settings.login_window_seconds) == (5, 300)
    config = tmp_path / "callmood.yaml"
    config.write_text("retention_interval_minutes: null\nlogin_window_seconds: 60\n")
    monkeypatch.setenv("CALLMOOD_LOGIN_MAX_FAILURES", "10")
    settings = load_settings(config)
    assert settings.retention_interval_minutes is None
    assert (settings.login_max_failures, settings.login_window_seconds) == (10, 60)


@pytest.mark.parametrize(
    "line",
    ["retention_interval_minutes: 0", "login_max_failures: 0", "login_window_seconds: -5"],
)
def test_retention_and_login_settings_must_be_positive(tmp_path, line):
    config = tmp_path / "bad.yaml"
    config.write_text(line + "\n")
    with pytest.raises(SettingsError, match=line.split(":")[0]):
        load_settings(config)
