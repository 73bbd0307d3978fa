"""The typed training configuration: every default lives here, a YAML file overrides some of them.

`load_training_config(path)` reads and validates a YAML file and raises
:class:`TrainingConfigError` naming the file, the key and the problem.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from callmood.errors import CallmoodError
from callmood.labels import LABEL_SETS
from callmood.safe_yaml import load_yaml


class TrainingConfigError(CallmoodError):
    """A training configuration file that cannot be used (syntax, unknown key, wrong type, path)."""


class _Strict(BaseModel):
    # Unknown keys are errors: a misspelt option silently ignored is a wasted training run.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CorpusSource(_Strict):
    """A corpus on disk, turned into manifest rows by `callmood.corpora.CORPORA[name]`."""

    name: str = Field(
        description="corpus name, a key of callmood.corpora.CORPORA (ravdess, emodb, ...)"
    )
    path: Path = Field(description="corpus folder; relative paths are relative to the project root")


class OptimizerConfig(_Strict):
    """AdamW settings."""

    learning_rate: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-2, ge=0)


class ScheduleConfig(_Strict):
    """Learning-rate schedule, stepped once per batch."""

    kind: Literal["cosine", "onecycle", "constant"] = "onecycle"
    warmup_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of all steps spent warming up (cosine and onecycle)"
    )


class EarlyStoppingConfig(_Strict):
    """Stop when validation UA has not improved for `patience` epochs."""

    enabled: bool = True
    patience: int = Field(8, ge=1, description="epochs without a better validation UA")


class ValidationConfig(_Strict):
    """Held-out part of the training groups used for early stopping and the best checkpoint."""

    fraction: float = Field(
        0.15, ge=0, lt=1, description="share of training groups (speakers) held out; 0 = none"
    )
    min_groups: int = Field(1, ge=1, description="at least this many groups when fraction > 0")
    hold_out: Literal["speakers", "corpus"] = Field(
        "speakers",
        description=(
            "speakers: groups drawn by `fraction`; corpus (leave-corpus-out only, >= 3 corpora): "
            "one whole training corpus validates, so recipes are chosen on an unseen corpus"
        ),
    )


class NoiseConfig(_Strict):
    probability: float = Field(0.5, ge=0, le=1)
    snr_db: tuple[float, float] = Field((5.0, 30.0), description="SNR drawn uniformly, dB")


class GainConfig(_Strict):
    probability: float = Field(0.5, ge=0, le=1)
    db: tuple[float, float] = Field((-6.0, 6.0), description="gain drawn uniformly, dB")


class SpeedConfig(_Strict):
    probability: float = Field(0.3, ge=0, le=1)
    factors: tuple[float, float] = Field(
        (0.9, 1.1), description="speed factor drawn uniformly; 1.1 = 10 % faster and higher"
    )


class TelephoneConfig(_Strict):
    probability: float = Field(0.0, ge=0, le=1)
    codecs: list[Literal["mulaw", "alaw"]] = Field(default_factory=lambda: ["mulaw", "alaw"])


class EqualizerConfig(_Strict):
    """A random band-pass (microphone and line) with one peaking band (a handset's colour)."""

    probability: float = Field(0.0, ge=0, le=1)
    low_hz: tuple[float, float] = Field((50.0, 400.0), description="high-pass edge, drawn, Hz")
    high_hz: tuple[float, float] = Field((3000.0, 7500.0), description="low-pass edge, drawn, Hz")
    peak_db: float = Field(6.0, ge=0, description="gain of the peaking band, drawn in +-peak_db")


class ReverbConfig(_Strict):
    """A synthetic room: exponentially decaying noise as the impulse response."""

    probability: float = Field(0.0, ge=0, le=1)
    rt60_seconds: tuple[float, float] = Field(
        (0.2, 0.8), description="reverberation time (decay by 60 dB), drawn, seconds"
    )


class CodecConfig(_Strict):
    """A lossy speech codec through PyAV (FFmpeg): Opus (VoIP, WebRTC) or MP3 (recorders)."""

    probability: float = Field(0.0, ge=0, le=1)
    codecs: list[Literal["opus", "mp3"]] = Field(default_factory=lambda: ["opus", "mp3"])
    bitrate_kbps: tuple[int, int] = Field((8, 32), description="bit rate, drawn, kbit/s")


# The warp factors VTLP accepts: human vocal tracts differ by about +-15 % in length, and
# Jaitly & Hinton draw from [0.9, 1.1]; beyond [0.7, 1.3] the "new speaker" is not a person.
VOCAL_TRACT_ALPHA_LIMITS = (0.7, 1.3)


class VocalTractConfig(_Strict):
    """Vocal-tract-length perturbation (VTLP): the frequency axis warped by a drawn factor."""

    probability: float = Field(0.0, ge=0, le=1)
    alpha: tuple[float, float] = Field(
        (0.9, 1.1),
        description=(
            "warp factor drawn uniformly per crop; > 1 moves formants up (a shorter vocal "
            "tract), < 1 down"
        ),
    )

    @field_validator("alpha")
    @classmethod
    def _plausible(cls, alpha: tuple[float, float]) -> tuple[float, float]:
        low, high = alpha
        if not 0 < low <= high:
            raise ValueError(f"must be 0 < low <= high, got {list(alpha)}")
        least, most = VOCAL_TRACT_ALPHA_LIMITS
        if low < least or high > most:
            raise ValueError(f"must lie within [{least}, {most}], got {list(alpha)}")
        return alpha


class SpecAugmentConfig(_Strict):
    probability: float = Field(0.5, ge=0, le=1)
    time_masks: int = Field(2, ge=0)
    time_mask_frames: int = Field(20, ge=1, description="longest time mask, frames")
    freq_masks: int = Field(2, ge=0)
    freq_mask_bins: int = Field(6, ge=1, description="widest feature mask, bins")


class CallerNormalizationConfig(_Strict):
    """Causal per-caller normalisation (callmood.normalization), simulated in training."""

    enabled: bool = False
    prior_seconds: float = Field(
        0.3,
        gt=0,
        description="how many seconds of a caller's speech the training-data prior weighs as",
    )
    memory_seconds: float | None = Field(
        None,
        gt=0,
        description=(
            "time constant (seconds of speech) with which the caller's statistics forget "
            "older speech; None = the whole call so far weighs the same"
        ),
    )
    context_probability: float = Field(
        0.5,
        ge=0,
        le=1,
        description=(
            "share of clean training crops normalised with earlier clips of the same speaker "
            "as well (a call in progress); the rest only with the prior and the crop itself "
            "(the first window of a call)"
        ),
    )
    context_clips: tuple[int, int] = Field(
        (1, 8), description="how many of the speaker's other clips, drawn uniformly"
    )

    @model_validator(mode="after")
    def _ordered(self) -> CallerNormalizationConfig:
        low, high = self.context_clips
        if not 1 <= low <= high:
            raise ValueError(f"context_clips must be 1 <= low <= high, got {self.context_clips}")
        return self


class AugmentationConfig(_Strict):
    """On-the-fly augmentation of training crops (never of validation or test clips)."""

    waveform_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "share of training batches augmented as audio (noise, gain, speed, equalizer, "
            "reverb, codec, telephone, vocal_tract) "
            "whose features are recomputed; the rest use cached clean features"
        ),
    )
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    gain: GainConfig = Field(default_factory=GainConfig)
    speed: SpeedConfig = Field(default_factory=SpeedConfig)
    telephone: TelephoneConfig = Field(default_factory=TelephoneConfig)
    equalizer: EqualizerConfig = Field(default_factory=EqualizerConfig)
    reverb: ReverbConfig = Field(default_factory=ReverbConfig)
    codec: CodecConfig = Field(default_factory=CodecConfig)
    vocal_tract: VocalTractConfig = Field(default_factory=VocalTractConfig)
    spec_augment: SpecAugmentConfig = Field(default_factory=SpecAugmentConfig)
    mixup_alpha: float = Field(0.0, ge=0, description="Beta(alpha, alpha) mixup; 0 = off")


class TrainingConfig(_Strict):
    """Everything a training run needs; the defaults are a sensible small recipe."""

    name: str = "callmood-model"
    corpora: list[CorpusSource] = Field(default_factory=list)
    manifests: list[Path] = Field(default_factory=list, description="manifest CSV files")
    label_set: str = Field("iemocap4", description="a key of callmood.labels.LABEL_SETS")
    classes: list[str] | None = Field(
        None, description="train on only these classes of the label set (default: all)"
    )
    features: dict[str, Any] = Field(
        default_factory=dict, description="callmood.features.FeatureConfig fields"
    )
    model: dict[str, Any] = Field(
        default_factory=dict,
        description="callmood.models.parallel_cnn_transformer.ModelConfig fields (not num_classes)",
    )
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(32, ge=2)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    seed: int = 0
    crop_seconds: float = Field(3.0, gt=0, description="length of training crops, seconds")
    window_seconds: float = Field(
        3.0, gt=0, description="analysis window recorded in the model package, seconds"
    )
    class_balance: Literal["weighted_loss", "balanced_sampler", "none"] = "weighted_loss"
    corpus_balance: Literal["none", "equal"] | dict[str, float] = Field(
        "none",
        description=(
            "share of each corpus in the clips drawn per epoch: `none` (as the corpora come), "
            "`equal` (the same share each) or {corpus: weight} (shares proportional to the "
            "weights); the sampler then also balances classes within each corpus"
        ),
    )
    trim_silence_db: float | None = Field(
        None,
        gt=0,
        description=(
            "cut leading and trailing audio quieter than this many dB below the clip's loudest "
            "25 ms frame, as call analysis only ever sees voice-active windows "
            "(None = whole clips)"
        ),
    )
    speaker_normalization: bool = Field(
        False,
        description=(
            "standardise each speaker's features with that speaker's own mean and standard "
            "deviation over all of their clips, test speakers included (their unlabelled audio; "
            "a transductive protocol, reported as such). Models trained this way need "
            "per-speaker statistics at inference and are refused by `callmood analyze`"
        ),
    )
    caller_normalization: CallerNormalizationConfig = Field(
        default_factory=CallerNormalizationConfig,
        description=(
            "normalise features per caller with the statistics of their speech so far "
            "(causal; usable by `callmood analyze`, the live stream and batch)"
        ),
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    branch_loss: float = Field(
        0.0,
        ge=0,
        description=(
            "weight of a cross-entropy on each branch's own logits (its slice of the classifier), "
            "added to the joined loss, so that no branch can lean on the others; "
            "0 = the joined loss only"
        ),
    )
    corpus_adversarial: float = Field(
        0.0,
        ge=0,
        description=(
            "weight of a corpus classifier trained through gradient reversal on the joined "
            "branch outputs (domain-adversarial training), so that the network learns features "
            "that do not tell the training corpora apart; needs >= 2 training corpora; "
            "0 = off. The classifier is training-only: the exported network is unchanged"
        ),
    )
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    num_threads: int | None = Field(
        1, ge=1, description="torch CPU threads (None = torch's default)"
    )
    export_onnx: bool = True
    model_card: Path | None = Field(
        None,
        description="Markdown file written as the package's MODEL_CARD.md "
        "(default: generated from model.json)",
    )

    @field_validator("corpora", mode="before")
    @classmethod
    def _corpora_as_list(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("corpus_balance", mode="before")
    @classmethod
    def _corpus_balance_valid(cls, value: Any) -> Any:
        # Checked here so the message names the bad value; pydantic's union error would not.
        if isinstance(value, str):
            if value not in ("none", "equal"):
                raise ValueError(
                    f"corpus_balance must be `none`, `equal` or a mapping corpus -> weight, "
                    f"got `{value}`"
                )
            return value
        if not isinstance(value, dict) or not value:
            raise ValueError(
                "corpus_balance must be `none`, `equal` or a non-empty mapping corpus -> weight, "
                f"got {value!r}"
            )
        weights = {}
        for name, weight in value.items():
            # bool is an int to Python, but `true` as a weight is a mistake.
            is_number = isinstance(weight, int | float) and not isinstance(weight, bool)
            if not is_number or not math.isfinite(weight) or weight <= 0:
                raise ValueError(
                    f"corpus_balance weight of corpus `{name}` must be a positive number, "
                    f"got {weight!r}"
                )
            weights[str(name)] = float(weight)
        return weights

    @model_validator(mode="after")
    def _has_data(self) -> TrainingConfig:
        if not self.corpora and not self.manifests:
            raise ValueError("give at least one entry in `corpora` or `manifests`")
        if self.label_set not in LABEL_SETS:
            known = ", ".join(LABEL_SETS)
            raise ValueError(f"unknown label_set `{self.label_set}` (known: {known})")
        if self.classes is not None:
            allowed = LABEL_SETS[self.label_set]
            if len(set(self.classes)) < 2 or not set(self.classes) <= set(allowed):
                raise ValueError(
                    f"`classes` must name at least 2 classes of label set {self.label_set} "
                    f"({', '.join(allowed)}), got {', '.join(self.classes)}"
                )
        if self.caller_normalization.enabled and self.speaker_normalization:
            raise ValueError(
                "caller_normalization and speaker_normalization exclude each other: the first "
                "uses a caller's past speech, the second all of a speaker's clips"
            )
        if self.model.get("absolute_statistics") is True:
            if not self.caller_normalization.enabled:
                raise ValueError(
                    "model.absolute_statistics needs caller_normalization.enabled: true "
                    "(without it the network sees the absolute features already)"
                )
            if self.model.get("statistics_branch") is not True:
                raise ValueError(
                    "model.absolute_statistics needs model.statistics_branch: true (the "
                    "absolute statistics join the statistics branch)"
                )
        if (
            self.model.get("absolute_level") is False
            and self.features.get("kind", "mfcc") != "mfcc"
        ):
            # Only with MFCCs is the line's level one feature (c0) that can be left out.
            raise ValueError(
                "model.absolute_level: false needs features.kind: mfcc (a gain shifts every "
                "log-mel band, but only c0 of the MFCCs)"
            )
        return self

    def class_names(self) -> tuple[str, ...]:
        """The classes trained on, in model output order (label set order)."""
        from callmood.labels import label_set

        classes = label_set(self.label_set)
        if self.classes is None:
            return classes
        return tuple(c for c in classes if c in self.classes)

    def feature_config(self) -> Any:
        """The `callmood.features.FeatureConfig` this run uses."""
        from callmood.features import FeatureConfig, FeatureError

        try:
            return FeatureConfig.from_dict(dict(self.features))
        except (FeatureError, TypeError) as error:
            raise TrainingConfigError(f"features: {error}") from None

    def resolve_paths(self, project_root: Path) -> TrainingConfig:
        """A copy with relative corpus and manifest paths made absolute against `project_root`."""

        def resolve(path: Path) -> Path:
            try:
                expanded = Path(os.path.expandvars(str(path))).expanduser()
                return expanded if expanded.is_absolute() else (project_root / expanded).resolve()
            except (OSError, RuntimeError, ValueError) as error:
                # A NUL byte, an unknown ~user, a name longer than the file system allows.
                problem = getattr(error, "strerror", None) or error
                raise TrainingConfigError(
                    f"path {str(path)[:200]!r} is unusable: {problem}"
                ) from None

        return self.model_copy(
            update={
                "corpora": [CorpusSource(name=c.name, path=resolve(c.path)) for c in self.corpora],
                "manifests": [resolve(m) for m in self.manifests],
                "model_card": resolve(self.model_card) if self.model_card else None,
            }
        )


def project_root_for(config_path: Path) -> Path:
    """The folder relative paths in `config_path` are read against.

    That is the nearest folder above the file holding a `pyproject.toml` (the
    project root, so `../shared/data/ravdess` means the same from any working
    directory), else the config file's own folder.
    """
    config_path = config_path.resolve()
    for folder in config_path.parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    return config_path.parent


def _format_validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key `{where}`")
        else:
            problems.append(f"`{where}`: {item['msg']}")
    return "; ".join(problems)


def parse_training_config(data: Any, *, source: str = "<config>") -> TrainingConfig:
    """Validate a mapping (e.g. parsed YAML) as a :class:`TrainingConfig`.

    Raises
    ------
    TrainingConfigError
        Naming `source` and every key that is unknown, mistyped or out of range.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TrainingConfigError(
            f"{source}: expected a mapping of options, got {type(data).__name__}"
        )
    try:
        return TrainingConfig.model_validate(data)
    except ValidationError as error:
        raise TrainingConfigError(f"{source}: {_format_validation_error(error)}") from None


def load_training_config(path: str | Path, *, check_paths: bool = True) -> TrainingConfig:
    """Read a YAML training config, validate it and resolve its paths.

    Parameters
    ----------
    path
        The YAML file.
    check_paths
        Check that every corpus folder and manifest file exists.

    Raises
    ------
    TrainingConfigError
        The file is missing, is not YAML, has an unknown key or a wrong type, or
        names a corpus folder or manifest that does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingConfigError(f"{path}: config file not found")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise TrainingConfigError(f"{path}: not valid YAML ({error})") from None
    except RecursionError:
        raise TrainingConfigError(f"{path}: not valid YAML (nested too deeply)") from None
    config = parse_training_config(data, source=str(path))
    try:
        config = config.resolve_paths(project_root_for(path))
    except TrainingConfigError as error:
        raise TrainingConfigError(f"{path}: {error}") from None
    if check_paths:
        check_config_paths(config, source=str(path))
    return config


def check_config_paths(config: TrainingConfig, *, source: str = "<config>") -> None:
    """Raise :class:`TrainingConfigError` for a corpus folder or manifest that does not exist."""
    from callmood.corpora import CORPORA

    for corpus in config.corpora:
        if corpus.name not in CORPORA:
            known = ", ".join(sorted(CORPORA))
            raise TrainingConfigError(f"{source}: unknown corpus `{corpus.name}` (known: {known})")
        if not _path_exists(corpus.path, "dir"):
            raise TrainingConfigError(
                f"{source}: corpus folder for `{corpus.name}` not found: {corpus.path}"
            )
    for manifest in config.manifests:
        if not _path_exists(manifest, "file"):
            raise TrainingConfigError(f"{source}: manifest not found: {manifest}")
    if config.model_card is not None and not _path_exists(config.model_card, "file"):
        raise TrainingConfigError(f"{source}: model_card not found: {config.model_card}")


def _path_exists(path: Path, kind: Literal["dir", "file"]) -> bool:
    # Path.is_dir/is_file raise for a name too long for the file system: not there either.
    try:
        return path.is_dir() if kind == "dir" else path.is_file()
    except OSError:
        return False
