"""Typed configuration: pydantic models (extra keys forbidden), YAML loading, dotted overrides.

A config file is YAML, ``version: 2``: each modality's stage-1 training under ``backbones.<modality>``,
each distillation method's own options under ``distill.<method>`` (validated against the options model
the method declares, ``Method.options_model``). A file without ``version`` is the older form (training
under ``data.modalities.<m>.train``, one flat ``distill``): it is read with a one-line deprecation
message and migrated in memory (:func:`migrate`); ``mtpkdot config upgrade`` writes the new form. ``load_config(path, overrides=["student.lr=1e-4"])`` reads it, applies the
overrides (each value parsed as YAML, so ``1e-4``, ``true``, ``[1, 2]`` work) and validates. A typo or a
wrong type raises :class:`ConfigError` naming the key and the file. ``dump_config`` writes the resolved
config next to results. The configs of the repository's ``configs/`` ship in the package
(``mtpkdot/resources``, which ``configs/`` links to): ``load_config("biovid_b")`` finds one by name.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mtpkdot.atomic import atomic_write_text
from mtpkdot.errors import UserError
from mtpkdot.registry import METHODS

log = logging.getLogger(__name__)

CONFIG_VERSION = 2


class ConfigError(UserError, ValueError):
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
    # left out of the dump while unset, so the stage sections of runs from before these keys stay the same
    fusion: str | None = Field(
        None, exclude_if=lambda v: v is None, description="the student's fusion (default: the teacher's)"
    )
    fusion_kwargs: dict[str, Any] = Field(
        default_factory=dict, exclude_if=lambda v: not v, description="with student.fusion: its arguments"
    )
    finetune_backbone: bool = False
    batch_size: int = 128
    lr: float = 1e-4
    snapshots: bool = Field(True, description="save similarity matrices at 0/50/75/100 % of training")
    # model selection on noisy validation curves, measured in docs/pipeline.md ("Model selection")
    select_window: int = Field(
        3, ge=1, description="select on the mean validation metric of this many epochs"
    )
    select_after: int = Field(1, ge=1, description="first epoch that may be selected")

    @model_validator(mode="after")
    def _check_fusion(self) -> StudentConfig:
        if self.fusion_kwargs and self.fusion is None:
            raise ValueError(
                "student.fusion_kwargs needs student.fusion (unset, the teacher's fusion is used)"
            )
        return self


class MethodOptions(Strict):
    """A distillation method's own options (``distill.<method>``); a method without any keeps this one."""


V1_DISTILL_KEYS: dict[str, tuple[str, ...]] = {
    "k": ("pkdot", "mtpkdot"),
    "blur": ("pkdot", "mtpkdot"),
    "p": ("pkdot", "mtpkdot"),
    "debias": ("pkdot", "mtpkdot"),
    "scaling": ("pkdot", "mtpkdot"),
    "centroid": ("mtpkdot",),
    "selection": ("mtpkdot",),
    "temperature": ("kl",),
}
"""The flat ``distill`` keys of config version 1 -> the methods whose section holds each one now."""


class DistillConfig(BaseModel):
    """Eq. 10's loss weights, shared by every method, and one section per method with its own options
    (``distill.mtpkdot.k``, ``distill.kl.temperature``), validated against ``Method.options_model``.

    A section is validated when the config is, if the method is registered by then (the CLI and
    :func:`mtpkdot.plugins.load` fill the registry first); otherwise when the method is built
    (:meth:`options`).
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    alpha: float = Field(0.8, ge=0)
    beta: float = Field(0.2, ge=0)
    gamma: float = Field(0.2, ge=0)

    @model_validator(mode="after")
    def _check_sections(self) -> DistillConfig:
        extra = self.__pydantic_extra__ or {}
        for name, raw in extra.items():
            extra[name] = _method_section(name, raw)
        return self

    def compact(self) -> dict[str, Any]:
        """The dump with each method section reduced to what differs from the method's defaults (empty
        ones left out): equal for equal settings, whichever sections a file spells out."""
        data = self.model_dump(mode="json")
        for name, value in (self.__pydantic_extra__ or {}).items():
            value = self.options(name) if name in METHODS else value
            own = (
                value.model_dump(mode="json", exclude_defaults=True)
                if isinstance(value, BaseModel)
                else value
            )
            if own:
                data[name] = own
            else:
                data.pop(name, None)
        return data

    def options(self, method: str, model: type[BaseModel] | None = None) -> Any:
        """``distill.<method>`` validated against ``model`` (default: the registered method's
        ``options_model``); the model's defaults when the section is absent."""
        model = model or METHODS.get(method).options_model
        raw = (self.__pydantic_extra__ or {}).get(method, {})
        if isinstance(raw, model):
            return raw
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(_format_errors(exc, "section", prefix=f"distill.{method}")) from None

    def check_sections(self) -> None:
        """Validate every method section against the registry (filled by now): a section read while
        it was empty was kept as written."""
        try:
            DistillConfig.model_validate(self.model_dump(mode="json"))
        except ValidationError as exc:
            raise ConfigError(_format_errors(exc, "section", prefix="distill")) from None

    def v1_dump(self, method: str) -> dict[str, Any]:
        """The flat version-1 ``distill`` section of the student of ``method``: its own options where it
        has them, else the section version 2 moved each key to (student stages of old run folders)."""
        out = {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}
        for key, methods in V1_DISTILL_KEYS.items():
            source = method if method in methods else methods[-1]
            out[key] = getattr(self.options(source), key)
        return out

    def v1_expressible(self) -> bool:
        """Whether version 1's flat section can say this: every moved key has one value."""
        values = [{getattr(self.options(m), k) for m in ms} for k, ms in V1_DISTILL_KEYS.items()]
        return all(len(v) == 1 for v in values)


def _method_section(name: str, raw: Any) -> Any:
    if name in V1_DISTILL_KEYS:
        new = " / ".join(f"distill.{m}.{name}" for m in V1_DISTILL_KEYS[name])
        raise PydanticCustomError(
            "moved_key", "moved to {new} in config version 2", {"new": new, "section": name}
        )
    if name not in METHODS:
        if not len(METHODS):  # nothing registered yet: checked when the method is built
            return raw
        known = ", ".join(METHODS.names())
        raise PydanticCustomError(
            "unknown_section",
            "unknown key (typo?); a section is a method: {known}",
            {"section": name, "known": known},
        )
    model = METHODS.get(name).options_model
    if isinstance(raw, model):
        return raw
    try:
        return model.model_validate({} if raw is None else raw)
    except ValidationError as exc:
        raise PydanticCustomError(
            "method_section", "invalid method section", {"section": name, "errors": exc.errors()}
        ) from None


class Config(Strict):
    version: Literal[2] = Field(CONFIG_VERSION, description="config format (a file without it: version 1)")
    name: str = "experiment"
    seeds: list[int] = Field(default_factory=lambda: [0])
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(False, description="mixed precision on CUDA")
    num_threads: int | None = Field(None, ge=1)
    data: DataConfig
    backbones: dict[str, TrainConfig] = Field(
        default_factory=dict,
        validate_default=True,
        description="stage-1 training of each modality's backbone (a modality not listed: the defaults)",
    )
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

    @field_validator("backbones")
    @classmethod
    def _fill_backbones(cls, value: dict[str, TrainConfig], info: ValidationInfo) -> dict[str, TrainConfig]:
        data = info.data.get("data")
        if data is None:  # data itself did not validate: its errors are reported
            return value
        unknown = sorted(set(value) - set(data.modalities))
        if unknown:
            raise ValueError(f"backbones {unknown} are not in data.modalities ({sorted(data.modalities)})")
        return {m: value.get(m, TrainConfig()) for m in data.modalities}

    def student_fusion(self) -> tuple[str, dict[str, Any]]:
        """The fusion (name, arguments) the student and the lower bound build: the teacher's by default."""
        if self.student.fusion is None:
            return self.teacher.fusion, dict(self.teacher.fusion_kwargs)
        return self.student.fusion, dict(self.student.fusion_kwargs)

    def v1_expressible(self) -> bool:
        """Whether config version 1 could say this (old run folders are recognised only then)."""
        return self.student.fusion is None and self.distill.v1_expressible()


DEPRECATED = (
    "config {source} is in the version 1 form (no `version: 2`): read and migrated in memory; "
    "`mtpkdot config upgrade {source}` writes the new form"
)


def config_version(data: dict[str, Any], source: str) -> int:
    version = data.get("version", 1)
    if version not in (1, CONFIG_VERSION):
        raise ConfigError(f"config {source}: version {version!r} is unknown (this mtpkdot reads 1 and 2)")
    return int(version)


def migrate(data: dict[str, Any], source: str = "<dict>", warn: bool = True) -> dict[str, Any]:
    """A raw config dict in the version-2 form: a version-1 one (no ``version``) is migrated, with a
    one-line deprecation message when ``warn``; a version-2 one is returned as is."""
    if config_version(data, source) == CONFIG_VERSION:
        return data
    if warn:
        log.warning(DEPRECATED.format(source=source))
    return migrate_v1(data)


def migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: ``data.modalities.<m>.train`` -> ``backbones.<m>``; each flat ``distill`` key
    -> the sections of the methods that use it (:data:`V1_DISTILL_KEYS`)."""
    old = copy.deepcopy(data)
    out: dict[str, Any] = {"version": CONFIG_VERSION}
    backbones = {}
    mods = old.get("data", {}).get("modalities") if isinstance(old.get("data"), dict) else None
    for name, mod in (mods or {}).items():
        if isinstance(mod, dict) and "train" in mod:
            backbones[name] = mod.pop("train")
    for key, value in old.items():
        out[key] = value
        if key == "data" and backbones:
            out["backbones"] = backbones
    distill = out.get("distill")
    if isinstance(distill, dict):
        for key, methods in V1_DISTILL_KEYS.items():
            if key in distill:
                value = distill.pop(key)
                for m in methods:
                    distill.setdefault(m, {})[key] = value
    return out


def upgrade_text(text: str, source: str) -> str:
    """The version-2 YAML of a config file's text (``mtpkdot config upgrade``). The result is checked
    by validating it; comments are not kept (YAML readers drop them)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {source} must hold a mapping at the top level")
    new = migrate(data, source, warn=False)
    config_from_dict(copy.deepcopy(new), source)
    return yaml.safe_dump(new, sort_keys=False)


def _v1_override(path: list[str]) -> list[list[str]] | None:
    """The version-2 keys of a version-1 override key (``distill.k``, ``data.modalities.video.train.lr``)."""
    if len(path) == 2 and path[0] == "distill" and path[1] in V1_DISTILL_KEYS:
        return [["distill", m, path[1]] for m in V1_DISTILL_KEYS[path[1]]]
    if len(path) >= 4 and path[:2] == ["data", "modalities"] and path[3] == "train":
        return [["backbones", path[2], *path[4:]]]
    return None


def moved_key(loc: tuple[Any, ...]) -> str | None:
    """Where an unknown key of version 1 lives now (``data.modalities.video.train`` -> ``backbones.video``)."""
    new = _v1_override([str(p) for p in loc])
    return None if new is None else " / ".join(".".join(p) for p in new)


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
    """Set dotted keys (``student.lr=1e-4``) in a nested dict; intermediate dicts are created.

    A version-1 key (``distill.k``, ``data.modalities.<m>.train...``) sets its version-2 keys, with a
    one-line deprecation message naming them.
    """
    for item in overrides or []:
        path, value = _parse_override(item)
        new = _v1_override(path)
        if new is None:
            _set(data, path, value, item)
            continue
        names = ", ".join(".".join(p) for p in new)
        log.warning(f"--set {'.'.join(path)} is a version 1 key: applied as {names} (write that instead)")
        for p in new:
            _set(data, p, copy.deepcopy(value), item)
    return data


def _set(data: dict[str, Any], path: list[str], value: Any, item: str) -> None:
    node = data
    for part in path[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node = nxt
    node[path[-1]] = value


def _format_errors(exc: ValidationError, source: str, prefix: str = "") -> str:
    lines = [f"invalid config {source}:"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "method_section":  # a method's own model: its errors under distill.<method>
            ctx = err["ctx"]
            lines += [_error_line((*loc, ctx["section"], *e["loc"]), e, prefix) for e in ctx["errors"]]
            continue
        if err["type"] in ("moved_key", "unknown_section"):  # raised for a distill section: name it
            loc = (*loc, err["ctx"]["section"])
        lines.append(_error_line(loc, err, prefix))
    return "\n".join(lines)


def _error_line(loc: tuple[Any, ...], err: Any, prefix: str) -> str:
    key = ".".join([prefix] * bool(prefix) + [str(p) for p in loc]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        moved = moved_key(loc)
        msg = "unknown key (typo?)" if moved is None else f"moved to {moved} in config version 2"
    return f"  {key}: {msg}"


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Validate a raw config dict (a version-1 one is migrated first, with the deprecation message)."""
    try:
        return Config.model_validate(migrate(data, source))
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
    data = migrate(data, str(path))
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
