"""The service's configuration in one typed place: defaults in code, a YAML/TOML file, env vars.

Precedence, highest first: explicit overrides (command-line options), `CALLMOOD_*`
environment variables, the config file (`--config` or `CALLMOOD_CONFIG`), the defaults below.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from callmood.errors import CallmoodError
from callmood.safe_yaml import load_yaml

CONFIG_ENV_VAR = "CALLMOOD_CONFIG"
DATABASE_FILE_NAME = "callmood.db"
# A plain token put here is hashed into TOKEN_HASH_FILE_NAME on start and the file deleted.
TOKEN_FILE_NAME = "api_token"
TOKEN_HASH_FILE_NAME = "api_token.sha256"
SESSION_SECRET_FILE_NAME = "session_secret"
RULES_FILE_NAME = "rules.yaml"
MIN_TOKEN_LENGTH = 16  # characters of a hand-set API token


class SettingsError(CallmoodError):
    """The configuration file or a setting is invalid."""


def default_data_dir() -> Path:
    """Where the service keeps its database, audio and token unless told otherwise.

    Returns
    -------
    Path
        `$XDG_DATA_HOME/callmood`, or `~/.local/share/callmood`.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "callmood"


# The config file's values for the Settings being built; a context variable so that
# concurrent `load_settings` calls (tests, threads) never see each other's file.
_file_values: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "callmood_settings_file_values", default=None
)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Values read from the YAML/TOML config file by `load_settings`."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        values = _file_values.get() or {}
        return values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_values.get() or {})


class Settings(BaseSettings):
    """Settings of the web service, the job workers, the webhooks and `callmood purge`."""

    model_config = SettingsConfigDict(
        env_prefix="CALLMOOD_", extra="forbid", validate_default=True, frozen=True
    )

    host: str = Field("127.0.0.1", description="Interface to listen on (loopback by default).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder for the database, uploaded audio, the API token and the rules.",
    )
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db. "
            "Default: a SQLite file callmood.db in data_dir."
        ),
    )
    audio_dir: Path | None = Field(
        None, description="Folder for the uploaded call recordings. Default: data_dir/audio."
    )
    max_upload_mb: float = Field(200, gt=0, description="Largest accepted upload, in megabytes.")
    retention_days: int | None = Field(
        90,
        ge=1,
        description=(
            "Calls older than this many days are deleted (by the server's periodic purge and "
            "by `callmood purge`); null keeps all."
        ),
    )
    audit_retention_days: int | None = Field(
        None,
        ge=1,
        description=(
            "Audit events older than this many days are deleted (by the server's periodic "
            "purge and by `callmood purge`); null keeps them all. The call retention never "
            "deletes them: they outlive the calls they name (docs/access.md)."
        ),
    )
    retention_interval_minutes: float | None = Field(
        60,
        gt=0,
        description=(
            "How often the server purges calls older than retention_days, in minutes; "
            "null: never (leave it to `callmood purge`)."
        ),
    )
    auth_token: SecretStr | None = Field(
        None,
        description=(
            "API token (Bearer), or its hash as 'sha256:<hex digest>'. Default: the hash in "
            "data_dir/api_token.sha256, made with a new token (printed once) on first start."
        ),
    )
    auth_disabled: bool = Field(
        False, description="Serve without any authentication (local use only)."
    )
    session_hours: float = Field(
        12, gt=0, description="How long a dashboard login lasts, in hours."
    )
    login_max_failures: int = Field(
        5,
        ge=1,
        description="Failed logins from one client within login_window_seconds before it gets 429.",
    )
    login_window_seconds: float = Field(
        300, gt=0, description="The window over which failed logins are counted, in seconds."
    )
    # NoDecode: the env var is parsed by _split_comma_separated (a comma list or JSON).
    webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="URLs that receive alert events as signed JSON POSTs."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Key for the X-Callmood-Signature HMAC-SHA256 header of webhooks."
    )
    webhook_max_attempts: int = Field(
        5, ge=1, description="Deliveries per webhook event before giving up."
    )
    webhook_backoff_seconds: float = Field(
        1.0, gt=0, description="Delay before the first retry; doubles on each further retry."
    )
    workers: int = Field(1, ge=1, description="Analysis worker threads for uploaded calls.")
    model_dir: Path | None = Field(
        None, description="Model package folder. Default: the bundled model."
    )
    rules_path: Path | None = Field(
        None,
        description="Alert rules YAML. Default: data_dir/rules.yaml (the default rules if absent).",
    )
    # Twilio Media Streams connector (service/routes/twilio.py, docs/connectors-twilio.md).
    twilio_auth_token: SecretStr | None = Field(
        None,
        description=(
            "The Twilio account's Auth Token: streams to /api/connectors/twilio are then "
            "accepted on a valid X-Twilio-Signature (else only with the API token parameter)."
        ),
    )
    twilio_stream_url: str | None = Field(
        None,
        description=(
            "The <Stream url> exactly as in the TwiML, which Twilio signs. Default: "
            "wss://<Host header><path> (set it when a proxy changes the Host)."
        ),
    )
    # Asterisk AudioSocket connector (docs/connectors-asterisk.md). The protocol has no
    # authentication: keep it on loopback or a private network, and list Asterisk's address.
    audiosocket: str | None = Field(
        None,
        description="HOST:PORT of the AudioSocket TCP listener, e.g. 127.0.0.1:9092; null: off.",
    )
    audiosocket_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Client addresses or networks (CIDR) that may connect; empty: any.",
    )
    audiosocket_idle_seconds: float = Field(
        10, gt=0, description="An AudioSocket call silent this long is ended (stored partial)."
    )

    # Genesys Cloud AudioHook connector (routes/audiohook.py, docs/connectors-genesys.md):
    # the API key Genesys sends as X-API-KEY, and its client secret for message signatures.
    audiohook_api_key: SecretStr | None = Field(
        None,
        description="API key of the Genesys AudioHook integration (X-API-KEY); unset: the "
        "connector refuses every connection.",
    )
    audiohook_client_secret: SecretStr | None = Field(
        None,
        description="Base64 client secret of the AudioHook integration; set: every connection "
        "must carry a valid HMAC-SHA256 message signature.",
    )

    @field_validator("audiosocket")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        from callmood.service.audiosocket import split_host_port

        if value is not None:
            split_host_port(value)  # raises ValueError naming the problem
        return value

    @field_validator("audiosocket_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        from callmood.service.audiosocket import allowed_networks

        allowed_networks(value)  # raises ValueError naming a bad entry
        return value

    @field_validator("webhook_urls", "audiosocket_allow", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: Any) -> Any:
        # An env var holds one string; accept "https://a,https://b" as well as a JSON list.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [url.strip() for url in value.split(",") if url.strip()]
        return value

    @field_validator("auth_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # Wrong Bearer tokens are not throttled (a blocked address would lock out every
        # integration behind it), so a hand-set token's length is what stops guessing.
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"auth_token must have at least {MIN_TOKEN_LENGTH} characters (a random one: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("audiohook_api_key")
    @classmethod
    def _long_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        # Wrong keys are not throttled either: its length is what stops guessing.
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"audiohook_api_key must have at least {MIN_TOKEN_LENGTH} characters")
        return value

    @field_validator("audiohook_client_secret")
    @classmethod
    def _base64_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                key = base64.b64decode(value.get_secret_value(), validate=True)
            except binascii.Error:
                raise ValueError("audiohook_client_secret must be base64") from None
            if not key:
                raise ValueError("audiohook_client_secret must not be empty")
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook URL {url!r} must start with http:// or https://")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls))

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in `data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / DATABASE_FILE_NAME).resolve()}"

    @property
    def resolved_audio_dir(self) -> Path:
        """The folder for uploaded recordings, defaulting to `data_dir/audio`."""
        return self.audio_dir if self.audio_dir is not None else self.data_dir / "audio"

    @property
    def resolved_rules_path(self) -> Path:
        """The alert rules file the service reads and `PUT /api/rules` writes."""
        return self.rules_path if self.rules_path is not None else self.data_dir / RULES_FILE_NAME

    @property
    def max_upload_bytes(self) -> int:
        """`max_upload_mb` in bytes (1 MB = 1 000 000 bytes)."""
        return int(self.max_upload_mb * 1_000_000)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML (`.yaml`, `.yml`) or TOML (`.toml`) settings file into a dict.

    A TOML file may hold the settings at the top level or in a `[callmood]` table.

    Raises
    ------
    SettingsError
        The file is missing, unreadable, not valid YAML/TOML, or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"{path}: cannot read config file ({error})") from None
    try:
        if path.suffix.lower() == ".toml":
            values: Any = tomllib.loads(text)
            values = values.get("callmood", values)
        else:
            values = load_yaml(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise SettingsError(f"{path}: invalid config file: {error}") from None
    except RecursionError:
        raise SettingsError(f"{path}: invalid config file: nested too deeply") from None
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: a config file must hold a mapping of setting: value")
    return values


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, a config file, `CALLMOOD_*` env vars and overrides.

    Parameters
    ----------
    config_file
        YAML or TOML file; default: the file named by `$CALLMOOD_CONFIG`, if set.
    **overrides
        Settings that win over everything else (command-line options); `None` values
        are ignored so that unset options fall through.

    Raises
    ------
    SettingsError
        The file cannot be read, or a value is invalid (the message names the setting).
    """
    if config_file is None and os.environ.get(CONFIG_ENV_VAR):
        config_file = Path(os.environ[CONFIG_ENV_VAR])
    file_values = read_config_file(config_file) if config_file is not None else {}
    origin = str(config_file) if config_file is not None else "settings"
    token = _file_values.set(file_values)
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'settings'}: {item['msg']}"
            for item in error.errors()
        )
        raise SettingsError(f"{origin}: invalid setting: {problems}") from None
    except (PydanticSettingsError, json.JSONDecodeError) as error:
        raise SettingsError(f"{origin}: invalid setting: {error}") from None
    finally:
        _file_values.reset(token)
