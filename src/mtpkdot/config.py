"""Typed configuration: pydantic models (extra keys forbidden), YAML loading, dotted overrides.

A config file is YAML. ``load_config(path, overrides=["student.lr=1e-4"])`` reads it, applies the
overrides (each value parsed as YAML, so ``1e-4``, ``true``, ``[1, 2]`` work) and validates. A typo or a
wrong type raises :class:`ConfigError` naming the key and the file. ``dump_config`` writes the resolved
config next to results. The configs of the repository's ``configs/`` ship in the package
(``mtpkdot/resources``, which ``configs/`` links to): ``load_config("biovid_b")`` finds one by name.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from mtpkdot.atomic import atomic_write_text


class ConfigError(ValueError):
    """A config file or override that does not validate; the message names the key and the file."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainConfig(Strict):
    """Optimisation settings shared by every trained stage."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: str = Field("adam", description="a registered optimizer: adam | adamw | sgd")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd: momentum")
    schedule: str = Field(
        "constant",
        description="a registered learning-rate schedule after the warm-up: constant | cosine | step",
    )
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up: epoch e <= W trains at lr * e / (W + 1)")
    step_epochs: int = Field(10, ge=1, description="step schedule: epochs between two decays")
    step_factor: float = Field(0.1, gt=0, le=1, description="step schedule: factor on the rate at each decay")
    patience: int | None = Field(None, ge=1, description="early stopping on the validation metric")

    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = (
        "momentum",
        "schedule",
        "warmup_epochs",
        "step_epochs",
        "step_factor",
    )

    @model_validator(mode="after")
    def _check_warmup(self) -> TrainConfig:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be smaller than epochs ({self.epochs})"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: Any) -> dict[str, Any]:
        # settings added after runs were published: at their default (the behaviour from before they
        # existed) they stay out of the dump, so stage hashes and old run directories stay valid
        data = handler(self)
        for name in self.OMITTED_AT_DEFAULT:
            if getattr(self, name) == type(self).model_fields[name].default:
                data.pop(name, None)
        return data


class ModalityConfig(Strict):
    """One modality: how it is prepared from raw data and which backbone encodes it."""

    kind: Literal["video", "eda", "emg", "audio", "signal", "features"]
    # preparation
    column: str | None = Field(None, description="biosignal column(s) in the CSV, e.g. gsr, emg_corrugator")
    segments: int = Field(8, ge=1, description="video: temporal segments sampled per clip")
    frames_per_segment: int = Field(1, ge=1, description="video: consecutive frames per segment")
    size: int = Field(112, ge=8, description="video: frame side after crop and resize")
    face: str = Field("none", description="video: face detector for the crop (haar | none | registered)")
    window: tuple[float, float] | None = Field(None, description="signal window in seconds (start, end)")
    sample_rate: float = Field(512.0, gt=0)
    lowpass_hz: float | None = None
    highpass_hz: float | None = None
    log: bool = Field(False, description="log-scale spectrograms")
    normalize: Literal["none", "baseline", "zscore"] = Field(
        "none", description="signals: per-sample normalisation after filtering and windowing"
    )
    audio_rate: int = Field(16000, ge=1000, description="audio: decode sample rate (Hz)")
    freq_bins: int = Field(64, ge=2, description="audio: DFT spectrogram frequency bins")
    time_bins: int = Field(107, ge=1, description="audio: DFT spectrogram frames per clip")
    # encoder
    backbone: str = "tiny3d"
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)
    feature_dim: int = Field(512, ge=1)
    weights: Path | None = Field(None, description="optional pretrained weights file (never downloaded)")
    train: TrainConfig = Field(default_factory=TrainConfig)


class SynthConfig(Strict):
    """Embedded synthetic dataset (generated on demand in the real on-disk layout). The descriptions are
    the help of `mtpkdot synth` (Biovid wording; the Affwild2 command words a few its own way)."""

    subjects: int = Field(20, ge=2, description="number of subjects")
    samples_per_class: int = Field(10, ge=1, description="samples per subject and class")
    seed: int = Field(0, description="random seed (the dataset is a function of all options)")
    video_strength: float = Field(1.0, ge=0, description="strength of the facial pain response")
    physio_strength: float = Field(1.0, ge=0, description="strength of the EDA / EMG pain response")
    non_responders: float = Field(
        0.2, ge=0, le=1, description="share of subjects without a response (per modality)"
    )
    size: int = Field(64, ge=16, description="video frame side in pixels")
    fps: int = Field(25, ge=1, description="video frames per second")
    duration: float = Field(5.5, gt=0, description="sample length in seconds")
    part: Literal["A", "B"] = Field(
        "A", description="A: gsr ecg emg_trapezius; B: adds emg_corrugator emg_zygomaticus"
    )
    five_class: bool = Field(False, description="biovid: all five classes BL1, PA1..PA4 (else BL1 and PA4)")
    shared: float = Field(
        0.0,
        ge=0,
        le=1,
        description="biovid: share of the physiological response driven by a per-sample latent that also "
        "shows faintly in the face (0: none, the privileged signal is independent of the video given the label)",
    )

    @model_serializer(mode="wrap")
    def _omit_default_shared(self, handler: Any) -> dict[str, Any]:
        # shared=0 is the world from before the knob: leaving it out keeps synth.json and config hashes as they were
        data = handler(self)
        if self.shared == 0:
            data.pop("shared", None)
        return data


SYNTH_DEFAULTS: dict[str, dict[str, Any]] = {"biovid": {}, "affwild2": {"duration": 10.0}}
"""Per synthetic dataset, the defaults that differ from :class:`SynthConfig`'s (an Affwild2 video is
longer than a Biovid sample)."""


class DataConfig(Strict):
    dataset: str = Field("synthetic_biovid", description="a registered dataset reader")
    root: Path | None = Field(None, description="dataset root on disk")
    task: str = Field("bl1_pa4", description="biovid: bl1_pa4 | five_class; affwild2: va; own: see docs")
    annotations_root: Path | None = None
    biosignals: Literal["filtered", "raw"] = Field("filtered", description="biovid: biosignals_<x>/")
    videos_root: Path | None = None
    manifest: Path | None = None
    store: Path | None = Field(None, description="prepared store (default: <out>/store)")
    workers: int = Field(1, ge=1)
    modalities: dict[str, ModalityConfig]
    prevalent: list[str] = Field(default_factory=lambda: ["video"])
    privileged: list[str] = Field(default_factory=lambda: ["eda"])
    synthetic: SynthConfig | None = None
    sequence_length: int = Field(1, ge=1, description="affwild2: consecutive clips per sample")

    @model_validator(mode="after")
    def _check_modalities(self) -> DataConfig:
        names = set(self.modalities)
        for role in ("prevalent", "privileged"):
            for m in getattr(self, role):
                if m not in names:
                    raise ValueError(f"{role} modality {m!r} is not in data.modalities ({sorted(names)})")
        both = set(self.prevalent) & set(self.privileged)
        if both:
            raise ValueError(f"modalities {sorted(both)} are both prevalent and privileged")
        if not self.prevalent:
            raise ValueError("at least one prevalent modality is needed")
        return self


class ProtocolConfig(Strict):
    scheme: Literal["kfold", "loso", "official"] = "kfold"
    folds: int = Field(5, ge=2)
    val_subjects: float = Field(0.2, gt=0, lt=1, description="share of training subjects kept for validation")
    train_subjects: int | None = Field(None, ge=1, description="low-data setting: training subjects per fold")


class FeaturesConfig(Strict):
    """The feature cache the teacher side trains on (docs/pipeline.md, "Cross-fitted features")."""

    crossfit: int = Field(
        0,
        ge=0,
        description="K >= 2: every training sample's teacher-side feature comes from one of K backbones "
        "trained without its subject (K inner folds over the training subjects); 0: off",
    )

    @model_validator(mode="after")
    def _check_crossfit(self) -> FeaturesConfig:
        if self.crossfit == 1:
            raise ValueError("crossfit must be 0 (off) or at least 2 inner folds, not 1")
        return self


class TeacherConfig(TrainConfig):
    fusion: str = "concat"
    fusion_kwargs: dict[str, Any] = Field(default_factory=dict)
    lr: float = 1e-4


class AdapterConfig(TrainConfig):
    hidden: int = Field(256, ge=1)
    lr: float = 1e-3


class TNetConfig(TrainConfig):
    hidden: list[int] = Field(default_factory=lambda: [256])
    cosine_weight: float = Field(1.0, ge=0)
    lr: float = 1e-3


class StudentConfig(TrainConfig):
    methods: list[str] = Field(default_factory=lambda: ["none", "cosine", "mse", "kl", "pkdot", "mtpkdot"])
    finetune_backbone: bool = False
    batch_size: int = 128
    lr: float = 1e-4
    snapshots: bool = Field(True, description="save similarity matrices at 0/50/75/100 % of training")
    # model selection on noisy validation curves, measured in docs/pipeline.md ("Model selection")
    select_window: int = Field(
        3, ge=1, description="select on the mean validation metric of this many epochs"
    )
    select_after: int = Field(1, ge=1, description="first epoch that may be selected")


class DistillConfig(Strict):
    """Loss weights and relational KD settings (Eq. 10 and section III of the paper)."""

    alpha: float = Field(0.8, ge=0)
    beta: float = Field(0.2, ge=0)
    gamma: float = Field(0.2, ge=0)
    k: int = Field(30, ge=1, description="anchors per row")
    blur: float = Field(0.1, gt=0)
    p: int = Field(2, ge=1, le=2)
    debias: bool = True
    scaling: float = Field(0.5, gt=0, lt=1)
    centroid: Literal["similarity", "features", "none"] = "similarity"
    selection: Literal["per_batch", "per_sample"] = "per_batch"
    temperature: float = Field(4.0, gt=0, description="KL baseline softening temperature")


class Config(Strict):
    name: str = "experiment"
    seeds: list[int] = Field(default_factory=lambda: [0])
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(False, description="mixed precision on CUDA")
    num_threads: int | None = Field(None, ge=1)
    data: DataConfig
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    adapters: AdapterConfig = Field(default_factory=AdapterConfig)
    tnet: TNetConfig = Field(default_factory=TNetConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    tensorboard: bool = Field(
        False, description="every trained stage also writes its metrics.csv columns as TensorBoard scalars"
    )


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Set dotted keys (``student.lr=1e-4``) in a nested dict; intermediate dicts are created."""
    for item in overrides or []:
        path, value = _parse_override(item)
        node = data
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = nxt
        node[path[-1]] = value
    return data


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


DATA_PATH_KEYS = ("root", "annotations_root", "videos_root", "manifest", "store")


def _path_slots(data: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(section, key) of every path-valued setting present in a raw config dict."""
    slots: list[tuple[dict[str, Any], str]] = []
    d = data.get("data")
    if isinstance(d, dict):
        slots += [(d, k) for k in DATA_PATH_KEYS if d.get(k) is not None]
        mods = d.get("modalities")
        if isinstance(mods, dict):
            slots += [(m, "weights") for m in mods.values() if isinstance(m, dict) and m.get("weights")]
    return slots


def _resolve(data: dict[str, Any], base: Path) -> dict[str, Any]:
    for section, key in _path_slots(data):
        _resolve_one(section, key, base)
    return data


SHIPPED_DIR = Path(__file__).resolve().parent / "resources"
"""The configs shipped with the package (the repository's ``configs/`` is a link to this folder)."""

TENSORBOARD_MISSING = "tensorboard: true needs the tensorboard package: pip install mtpkdot[tensorboard]"


def shipped_configs() -> dict[str, Path]:
    """Name (file name without ``.yaml``) -> file of every shipped config, sorted by name."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.yaml"))}


def shipped_summary(path: Path) -> str:
    """The first comment line of a shipped config: what it is for."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip().rstrip(",:")
    return ""


def find_config(path: str | Path) -> tuple[Path, bool]:
    """``(file, shipped)`` for a config file path or, when no such file exists, a shipped config's name
    (``biovid_b`` or ``biovid_b.yaml``). A path wins when both exist."""
    path = Path(path)
    if path.is_file():
        return path, path.resolve().parent == SHIPPED_DIR
    shipped = shipped_configs()
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and name in shipped:
        return shipped[name], True
    raise ConfigError(
        f"config file {path} does not exist and is not a shipped config's name "
        f"(shipped: {', '.join(shipped)}; `mtpkdot config` lists them)"
    )


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (a file, or a shipped config's name), apply dotted overrides, validate.

    Relative paths written in the file resolve against the file's folder; relative paths given in
    ``overrides`` (the command line's ``--set``) resolve against the current directory, as a shell
    user expects. A shipped config's relative paths also resolve against the current directory (the
    package folder is no place for data), as they would in a copy made with ``mtpkdot config NAME``.
    """
    path, shipped = find_config(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    data = _resolve(data, Path.cwd() if shipped else path.parent.resolve())
    from_file = {(id(sec), key): sec[key] for sec, key in _path_slots(data)}
    data = apply_overrides(data, overrides)
    for section, key in _path_slots(data):
        if from_file.get((id(section), key)) != section[key]:  # set (or changed) on the command line
            _resolve_one(section, key, Path.cwd())
    cfg = config_from_dict(data, str(path))
    if cfg.tensorboard and not tensorboard_available():  # fail now, not after data preparation
        raise ConfigError(f"config {path}: {TENSORBOARD_MISSING}")
    return cfg


def _resolve_one(section: dict[str, Any], key: str, base: Path) -> None:
    value = Path(str(section[key])).expanduser()
    section[key] = str(value if value.is_absolute() else (base / value).resolve())


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def dump_config(cfg: Config, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
