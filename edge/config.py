"""Configuration: one TOML file, validated once at start into frozen, typed settings.

Every key and its default is documented in ``edge/smartbin.toml``, which is also the embedded default: a test
checks that the file and these models agree. Types are strict (``"18"`` is not a pin, ``18.0`` is not an integer,
``"yes"`` is not a boolean), numbers are finite and every one has physical bounds. Errors name the key path, e.g.
``smartbin.toml: sorting.threshold: Input should be less than or equal to 1``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.errors import ConfigError
from edge.model_store import installed_model, staged_model
from edge.preprocess import CropMode, Roi

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
DEFAULT_CONFIG = PACKAGE_DIR / "smartbin.toml"
BUNDLED_MODEL = PROJECT_DIR / "models" / "garbage12_resnet50_int8.tflite"

AUTO_EXPOSURE_S = 0.010
MAX_WIDTH, MAX_HEIGHT = 4656, 3496  # the largest Pi camera sensors: 16 MP IMX519 (HQ 4056x3040, v3 4608x2592)
MAX_THREADS = 2 * (os.cpu_count() or 1)
Pin = Annotated[int, Field(ge=0, le=53, description="BCM GPIO number")]


class Section(BaseModel):
    """Base of every section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ModelSettings(Section):
    path: Path = Field(BUNDLED_MODEL, description="the .tflite model; its card NAME.json must lie beside it")
    threads: int = Field(0, ge=0, le=MAX_THREADS, description="interpreter threads; 0 = all cores")
    allow_unsealed: bool = Field(False, description="run a model whose card has no integrity section (its file "
                                 "and labels unchecked, with a warning); false = refuse it (`python -m "
                                 "convert.seal` seals a card)")
    shadow: Path | None = Field(None, description="a candidate model that classifies each item too, while the "
                                "sorter is idle, for comparison (its card beside it); unset = none")
    trial_items: int = Field(200, ge=0, le=1_000_000,
                             description="after `smartbin model install`, items to watch before keeping it; 0 = off")
    trial_margin: float = Field(0.05, ge=0, le=1, description="rollback when the reject or error share rises "
                                "by more than this over the previous model's")


class CameraSettings(Section):
    source: str = Field(
        "synthetic",
        description="picamera2 | USB index | video file | stream URL | image folder | synthetic (belt simulator)",
    )
    width: int = Field(1280, ge=16, le=MAX_WIDTH, description="capture width in pixels (picamera2, USB)")
    height: int = Field(720, ge=16, le=MAX_HEIGHT, description="capture height in pixels (picamera2, USB)")
    fps: float = Field(10.0, ge=0, le=240,
                       description="frame rate; 0 = as fast as the source gives (replay, simulator)")
    stall_timeout_s: float = Field(5.0, ge=0.1, le=3600, description="no frame for this long = camera stalled (error)")
    roi: tuple[float, float, float, float] | None = Field(
        None, description="region of interest [left, top, width, height] as fractions; unset = centre square"
    )
    loop: bool = Field(False, description="replay sources (folder, video file) start over at the end")
    crop: CropMode = Field("item", description="item: a square around the item; roi: the ROI as it is")
    exposure_us: int = Field(
        0, ge=0, le=1_000_000, description="fixed exposure time (picamera2), microseconds; 0 = automatic"
    )
    lores: tuple[Annotated[int, Field(ge=16, le=MAX_WIDTH)], Annotated[int, Field(ge=16, le=MAX_HEIGHT)]] | None = \
        Field(
        None, description="picamera2: a second, smaller stream from the ISP [width, height] that the model's crop "
        "is cut from (the main stream still finds the item); unset = crop from the main stream")
    analogue_gain: float = Field(0.0, ge=0, le=64, description="fixed analogue gain (picamera2); 0 = automatic")
    awb: Literal["auto", "locked"] | tuple[Annotated[float, Field(ge=0.1, le=16)], Annotated[float, Field(
        ge=0.1, le=16)]] = Field("locked", description="white balance (picamera2): auto; locked (automatic, "
                                 "then fixed after lock_after_s); [red_gain, blue_gain] fixed")
    lock_after_s: float = Field(3.0, ge=0, le=3600, description="picamera2: after this long on the empty belt, "
                                "fix the automatic exposure and gain (and awb = locked); 0 = never")
    view_m: float = Field(0.5, gt=0, le=100, description="metres of belt across the frame's width (blur budget)")
    max_blur_px: float = Field(6.0, gt=0, le=1000, description="`smartbin check` warns above this motion blur")

    @property
    def blur_exposure_s(self) -> float:
        """The exposure that motion blur follows: the fixed one, or a typical automatic one indoors (10 ms)."""
        return self.exposure_us / 1e6 if self.exposure_us else AUTO_EXPOSURE_S

    def blur_px(self, belt_speed_m_s: float) -> float:
        """Motion blur along the belt, in pixels: speed × exposure × pixels per metre."""
        return belt_speed_m_s * self.blur_exposure_s * self.width / self.view_m

    @property
    def region(self) -> Roi | None:
        """The ROI as a Roi, or None for the centre square."""
        return Roi(*self.roi) if self.roi is not None else None

    @model_validator(mode="after")
    def _check_roi(self) -> CameraSettings:
        if 0 < self.fps < 0.1:
            raise ValueError("fps: 0 (as fast as the source gives) or at least 0.1")
        if self.lores is not None and (self.lores[0] > self.width or self.lores[1] > self.height):
            raise ValueError(f"lores: {self.lores[0]}x{self.lores[1]} is larger than the main stream "
                             f"{self.width}x{self.height}")
        if self.roi is not None:
            try:
                Roi(*self.roi)
            except ValueError as exc:
                raise ValueError(f"roi: {exc}") from None
        return self


Share = Annotated[float, Field(ge=0, le=1)]
Cost = Annotated[float, Field(ge=0, le=1_000_000)]


class SortingSettings(Section):
    threshold: float = Field(0.6, ge=0, le=1, description="without [costs]: below this confidence, the reject bin")
    thresholds: dict[str, Share] = Field(
        default_factory=dict, description="without [costs]: per-class thresholds that replace `threshold`"
    )
    quarantine_p: float = Field(
        0.05, gt=0, le=1, description="an item this likely of a hazardous bin's class goes to that bin"
    )
    reject_bin: str = Field("residual", description="bin for rejected and failed items")
    votes: int = Field(
        3, ge=1, le=32,
        description="frames classified per item (best-centred first, each in its own orientation); probabilities "
        "averaged",
    )


class CostSettings(Section):
    """What a mistake costs, in any unit (only ratios matter). An item in its own bin costs 0."""

    wrong_bin: Cost = Field(5.0, description="an item in a bin not its own")
    reject: Cost = Field(1.0, description="an item sent to the reject bin")
    hazardous_elsewhere: Cost = Field(
        100.0, description="an item of a hazardous bin's class anywhere else (the reject bin included)"
    )
    overrides: dict[str, dict[str, Cost]] = Field(
        default_factory=dict, description="CLASS.BIN = cost (BIN may be 'reject'), e.g. battery.residual = 100"
    )

    @model_validator(mode="before")
    @classmethod
    def _gather_overrides(cls, data: object) -> object:
        """`battery.residual = 100` in [costs] is TOML for {"battery": {"residual": 100}}: an override."""
        if not isinstance(data, dict):
            return data
        named = {k: v for k, v in data.items() if k in cls.model_fields or not isinstance(v, dict)}
        extra = {k: v for k, v in data.items() if k not in named}
        return {**named, "overrides": {**data.get("overrides", {}), **extra}} if extra else named


class ConveyorSettings(Section):
    trigger: Literal["auto", "vision", "beam", "frames"] = Field(
        "auto", description="item detection; auto: frames for image folders, vision otherwise"
    )
    belt_speed_m_s: float = Field(0.2, ge=0.01, le=5, description="belt speed, metres per second")
    item_pass_s: float = Field(1.5, ge=0.01, le=60, description="time the longest item takes to pass a gate, with "
                               "margin: how long a gate holds for an item of unmeasured length")
    pass_margin_m: float = Field(0.03, ge=0, le=1, description="belt a gate holds for before an item's front and "
                                 "after its tail, beyond the item as the trigger measured it, metres")
    pass_slack_m: float = Field(0.1, ge=0, le=1, description="belt a gate may hold for beyond the margin on either "
                                "side where no other item needs it (at most half the free time), metres")
    min_area: float = Field(0.01, gt=0, lt=1, description="vision: smallest item, as a share of the ROI's area")
    band: float = Field(0.3, gt=0, le=1, description="vision: width of the detection band, share of the ROI")
    diff_threshold: int = Field(20, ge=1, le=441, description="vision: colour distance from the empty belt that "
                                "counts (0-441)")
    background_alpha: float = Field(0.05, gt=0, le=1, description="vision: how fast the empty-belt model adapts")
    absent_frames: int = Field(2, ge=1, le=100, description="frames without an item before it counts as gone")
    beam_pin: Pin | None = Field(None, description="beam: GPIO input of the break-beam sensor at the camera line")
    beam_bounce_s: float = Field(0.005, ge=0, le=1, description="beam: debounce time")

    @model_validator(mode="after")
    def _check_beam(self) -> ConveyorSettings:
        if self.trigger == "beam" and self.beam_pin is None:
            raise ValueError("beam_pin: required when trigger = 'beam'")
        return self


class SimulatorSettings(Section):
    items: Path | None = Field(None, description="folder of item photos, one sub-folder per class; unset = drawn")
    view_m: float = Field(0.5, ge=0.05, le=10, description="belt length seen across the frame's width, metres")
    spacing_m: float = Field(0.45, ge=0.05, le=100, description="mean distance between item centres, metres")
    spacing_jitter: float = Field(0.25, ge=0, lt=1, description="random share of the spacing")
    item_m: tuple[float, float] = Field((0.08, 0.25), description="range of item sizes on the belt, metres")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="random seed: the same seed gives the same belt")

    @field_validator("item_m", mode="before")
    @classmethod
    def _one_size(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (value, value)
        return tuple(value) if isinstance(value, list) else value  # after a "before" validator, strict wants a tuple

    @model_validator(mode="after")
    def _check_sizes(self) -> SimulatorSettings:
        low, high = self.item_m
        if not 0.01 <= low <= high <= 2:
            raise ValueError("item_m: [smallest, largest], 0.01 <= smallest <= largest <= 2 (metres)")
        return self


class GatePlacement(Section):
    distance_m: float = Field(0.6, ge=0, le=100,
                              description="distance from the camera line to this gate along the belt")
    delay_s: float | None = Field(None, ge=0, le=3600,
                                  description="measured travel time to this gate; overrides distance_m")
    settle_s: float = Field(0.25, ge=0, le=10, description="time the gate takes to move into position")

    def delay(self, belt_speed_m_s: float) -> float:
        """Seconds from the camera line to this gate."""
        return self.delay_s if self.delay_s is not None else self.distance_m / belt_speed_m_s


class ServoGate(GatePlacement):
    kind: Literal["servo"]
    pin: Pin
    safe_angle: float = Field(
        0.0, ge=-180, le=180, description="angle that leads to the default bin; every error returns here"
    )
    min_angle: float = Field(-90.0, ge=-180, le=180)
    max_angle: float = Field(90.0, ge=-180, le=180)
    min_pulse_width: float = Field(0.001, gt=0, le=0.02, description="seconds of pulse at min_angle")
    max_pulse_width: float = Field(0.002, gt=0, le=0.02, description="seconds of pulse at max_angle")

    @model_validator(mode="after")
    def _check_range(self) -> ServoGate:
        if not self.min_angle < self.max_angle or not self.min_angle <= self.safe_angle <= self.max_angle:
            raise ValueError("min_angle < max_angle, and safe_angle between them")
        if not self.min_pulse_width < self.max_pulse_width:
            raise ValueError("min_pulse_width: must be less than max_pulse_width")
        return self


class RelayGate(GatePlacement):
    kind: Literal["relay"]
    pin: Pin
    active_high: bool = Field(True, description="True: the relay/solenoid is on while the pin is high")


Gate = Annotated[ServoGate | RelayGate, Field(discriminator="kind")]


class BinSettings(Section):
    classes: tuple[str, ...] = Field((), description="model labels sorted into this bin")
    gate: str | None = Field(None, description="gate that routes items here; none = the default bin")
    angle: float | None = Field(None, description="servo angle for this bin (servo gates only)")
    hazardous: bool = Field(False, description="its classes are hazardous: quarantine, hazardous_elsewhere cost")


class GpioSettings(Section):
    pin_factory: Literal["auto", "mock", "lgpio", "rpigpio", "pigpio", "native"] = Field(
        "auto", description="auto: GPIOZERO_PIN_FACTORY / gpiozero's choice on a Pi, mock pins elsewhere"
    )


class RecordSettings(Section):
    path: Path | None = Field(
        None, description="SQLite file; unset = $STATE_DIRECTORY/items.db, else ~/.local/state/smartbin/items.db"
    )
    keep_days: float = Field(90.0, ge=0, le=36500, description="items older than this are deleted; 0 = kept")
    max_mb: float = Field(2000.0, ge=0, le=1_000_000, description="the oldest items go above this size; 0 = no cap")
    spill: Path | None = Field(
        None, description="where records held at a stop (disk full) wait for the next start, on another file system; "
        "unset = $RUNTIME_DIRECTORY/held-records.jsonl (systemd), else none (they are logged)"
    )

    @property
    def database(self) -> Path:
        """Where the item records are written."""
        if self.path is not None:
            return self.path
        state = os.environ.get("STATE_DIRECTORY")
        if state:
            return Path(state.split(":")[0]) / "items.db"
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        return Path(base) / "smartbin" / "items.db"

    @property
    def spill_file(self) -> Path | None:
        """Where held records go at a stop, None where there is no such place."""
        if self.spill is not None:
            return self.spill
        runtime = os.environ.get("RUNTIME_DIRECTORY")
        return Path(runtime.split(":")[0]) / "held-records.jsonl" if runtime else None


class RetrainSettings(Section):
    enabled: bool = Field(True, description="keep frames of uncertain items (and a sample) for retraining")
    folder: Path | None = Field(None, description="unset = 'uncertain' beside the item database")
    keep_below: float = Field(0.8, ge=0, le=1, description="keep items decided with less confidence than this")
    sample_share: float = Field(0.05, ge=0, le=1, description="and this share of the confident ones (chosen by a "
                                "hash of the item id), so that confident mistakes are found too")
    max_mb: float = Field(500.0, gt=0, le=1_000_000,
                          description="size cap of the folder; the oldest unlabelled frames go first")
    min_free_mb: float = Field(500.0, ge=0, le=1_000_000,
                               description="below this much free disk no frame is kept (the records go on)")


class MetricsSettings(Section):
    enabled: bool = Field(False, description="serve Prometheus metrics at http://host:port/metrics")
    host: str = Field("127.0.0.1", description="address to listen on; 0.0.0.0 = every interface")
    port: int = Field(9101, ge=0, le=65535, description="TCP port; 0 = any free port (logged at start)")


class WebSettings(Section):
    enabled: bool = Field(False, description="serve the operator's web page from `smartbin run`")
    host: str = Field("127.0.0.1", description="address to listen on; any but a loopback address needs a token")
    port: int = Field(8080, ge=0, le=65535, description="TCP port; 0 = any free port (logged at start)")
    token: str = Field("", description="access token (at least 16 characters); empty = none, loopback only")
    max_upload_mb: float = Field(10.0, gt=0, le=100, description="largest photo 'classify a photo' accepts, MB")
    max_upload_pixels: int = Field(
        20_000_000, ge=1, le=100_000_000, description="largest photo 'classify a photo' decodes, in pixels"
    )
    max_model_mb: float = Field(64.0, gt=0, le=1000, description="largest model `smartbin learn --to` may stage, MB")
    max_connections: int = Field(32, ge=2, le=1000, description="connections served at once (more: answered 503)")
    request_timeout_s: float = Field(10.0, ge=0.1, le=600, description="time to send a request head")

    @model_validator(mode="after")
    def _check_token(self) -> WebSettings:
        if self.token and len(self.token) < 16:
            raise ValueError("token: at least 16 characters")
        if not self.token and not is_loopback(self.host):
            raise ValueError(f"token: required to listen on {self.host!r} (only a loopback host may go without)")
        return self


TOPIC_PART = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"  # no MQTT wildcards (+ #), no empty level


class MqttSettings(Section):
    enabled: bool = Field(False, description="publish status, items and telemetry to an MQTT broker")
    host: str = Field("localhost", min_length=1, description="the broker's host name or address")
    port: int = Field(1883, ge=1, le=65535, description="the broker's port (8883 for TLS, usually)")
    tls: bool = Field(False, description="connect with TLS (the system's CAs unless ca_file is set)")
    ca_file: Path | None = Field(None, description="CA certificate(s) to trust, PEM")
    cert_file: Path | None = Field(None, description="client certificate for TLS client auth, PEM")
    key_file: Path | None = Field(None, description="the client certificate's private key, PEM")
    username: str = Field("", description="user name; empty = none")
    password_file: Path | None = Field(None, description="file holding the password (never the TOML itself)")
    bin_id: str = Field("", pattern=r"^$|^[A-Za-z0-9_-]{1,64}$", description="this bin's name; empty = host name")
    prefix: str = Field("smartbin", max_length=64, pattern=TOPIC_PART, description="first topic level(s)")
    qos: int = Field(1, ge=0, le=2, description="QoS of item messages (status and discovery use 1)")
    telemetry_s: float = Field(30.0, ge=1, le=3600, description="seconds between telemetry messages")
    keepalive_s: int = Field(30, ge=2, le=3600, description="MQTT keep-alive: the last will fires after 1.5x")
    discovery: bool = Field(True, description="publish Home Assistant MQTT discovery for the counts")

    @model_validator(mode="after")
    def _check_auth(self) -> MqttSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file: give both or neither")
        if (self.ca_file or self.cert_file) and not self.tls:
            raise ValueError("tls: must be true when ca_file or cert_file is set")
        if self.password_file is not None and not self.username:
            raise ValueError("username: required with password_file")
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback address."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(Section):
    model: ModelSettings = ModelSettings()
    camera: CameraSettings = CameraSettings()
    sorting: SortingSettings = SortingSettings()
    conveyor: ConveyorSettings = ConveyorSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    gpio: GpioSettings = GpioSettings()
    records: RecordSettings = RecordSettings()
    retrain: RetrainSettings = RetrainSettings()
    metrics: MetricsSettings = MetricsSettings()
    web: WebSettings = WebSettings()
    mqtt: MqttSettings = MqttSettings()
    costs: CostSettings | None = Field(None, description="expected-cost decisions; absent = the threshold rule")
    gates: dict[str, Gate] = Field(default_factory=dict)
    bins: dict[str, BinSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_sorting(self) -> Settings:
        if not self.bins:
            raise ValueError("bins: at least one bin is needed")
        pins: dict[int, str] = {}
        for name, gate in self.gates.items():
            if gate.pin in pins:
                raise ValueError(f"gates.{name}.pin: GPIO{gate.pin} is already used by gates.{pins[gate.pin]}")
            pins[gate.pin] = name
        owner: dict[str, str] = {}
        for name, spec in self.bins.items():
            for label in spec.classes:
                if label in owner:
                    raise ValueError(f"bins.{name}.classes: {label!r} is already in bins.{owner[label]}")
                owner[label] = name
            self._check_bin_gate(name, spec)
        default = [name for name, spec in self.bins.items() if spec.gate is None]
        if len(default) != 1:
            raise ValueError(f"bins: exactly one bin must have no gate (the default bin), found {default or 'none'}")
        if self.conveyor.beam_pin is not None and self.conveyor.beam_pin in pins:
            raise ValueError(f"conveyor.beam_pin: GPIO{self.conveyor.beam_pin} is already used by "
                             f"gates.{pins[self.conveyor.beam_pin]}")
        if self.sorting.reject_bin not in self.bins:
            raise ValueError(f"sorting.reject_bin: {self.sorting.reject_bin!r} is not a bin")
        self._check_decisions(owner)
        return self

    def _check_decisions(self, owner: dict[str, str]) -> None:
        for label in self.sorting.thresholds:
            if label not in owner:
                raise ValueError(f"sorting.thresholds.{label}: {label!r} is not a class of any bin")
        if self.sorting.thresholds and self.costs is not None:
            raise ValueError("sorting.thresholds: per-class thresholds apply without [costs]; remove one of them")
        for label, costs in (self.costs.overrides if self.costs else {}).items():
            if label not in owner:
                raise ValueError(f"costs.{label}: {label!r} is not a class of any bin")
            for destination in costs:
                if destination not in self.bins and destination != "reject":
                    raise ValueError(f"costs.{label}.{destination}: {destination!r} is not a bin (nor 'reject')")

    def _check_bin_gate(self, name: str, spec: BinSettings) -> None:
        if spec.gate is None:
            if spec.angle is not None:
                raise ValueError(f"bins.{name}.angle: a bin without a gate takes no angle")
            return
        gate = self.gates.get(spec.gate)
        if gate is None:
            raise ValueError(f"bins.{name}.gate: no gate named {spec.gate!r}")
        if isinstance(gate, ServoGate):
            if spec.angle is None:
                raise ValueError(f"bins.{name}.angle: required for servo gate {spec.gate!r}")
            if not gate.min_angle <= spec.angle <= gate.max_angle or spec.angle == gate.safe_angle:
                raise ValueError(
                    f"bins.{name}.angle: must lie in [{gate.min_angle}, {gate.max_angle}] "
                    f"and differ from the safe angle {gate.safe_angle}"
                )
        else:
            if spec.angle is not None:
                raise ValueError(f"bins.{name}.angle: relay gate {spec.gate!r} takes no angle")
            users = [b for b, s in self.bins.items() if s.gate == spec.gate]
            if len(users) > 1:
                raise ValueError(f"bins.{name}.gate: relay {spec.gate!r} can serve one bin, used by {users}")

    @property
    def retrain_folder(self) -> Path:
        """Where uncertain items' frames are kept."""
        return self.retrain.folder or self.records.database.parent / "uncertain"

    @property
    def default_bin(self) -> str:
        """The bin items reach when every gate is in its safe position."""
        return next(name for name, spec in self.bins.items() if spec.gate is None)

    @property
    def hazardous_classes(self) -> tuple[str, ...]:
        """The classes of the bins marked hazardous (quarantined, and costly anywhere else)."""
        return tuple(label for spec in self.bins.values() if spec.hazardous for label in spec.classes)

    def bin_of(self) -> dict[str, str]:
        """Label → bin."""
        return {label: name for name, spec in self.bins.items() for label in spec.classes}

    def check_labels(self, labels: tuple[str, ...]) -> None:
        """Every model label has a bin and every configured class is a model label."""
        bin_of = self.bin_of()
        missing = [label for label in labels if label not in bin_of]
        if missing:
            raise ConfigError(f"bins: class {missing[0]!r} of the model has no bin ({len(missing)} unmapped)")
        unknown = sorted(set(bin_of) - set(labels))
        if unknown:
            raise ConfigError(f"bins.{bin_of[unknown[0]]}.classes: {unknown[0]!r} is not a label of the model")


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate a TOML config; ``None`` reads the embedded default. Raises ConfigError (one line).
    Without ``model.path`` the model is the version installed by ``smartbin model install`` (under the records'
    folder) if there is one, else the bundled model; without ``model.shadow`` the shadow is the candidate staged
    by ``smartbin learn --to``, if there is one."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config unreadable: {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from None
    try:
        settings = resolve_paths(parse_settings(data), path.parent)
    except ValidationError as exc:
        raise ConfigError(f"{path.name}: {describe(exc)}") from None
    model = data.get("model")
    if not (isinstance(model, dict) and "path" in model):  # no model named: the installed version, if any
        installed = installed_model(settings.records.database.parent)
        if installed is not None:
            settings = settings.model_copy(update={"model": settings.model.model_copy(update={"path": installed})})
    if not (isinstance(model, dict) and "shadow" in model):  # no shadow named: the staged candidate, if any
        staged = staged_model(settings.records.database.parent)
        if staged is not None:
            settings = settings.model_copy(update={"model": settings.model.model_copy(update={"shadow": staged})})
    return settings


def parse_settings(data: dict[str, Any]) -> Settings:
    """Validate parsed TOML (or a dumped Settings) strictly: as JSON, where strings become paths and arrays
    tuples but nothing else is coerced. Raises pydantic's ValidationError."""
    return Settings.model_validate_json(json.dumps(data, default=str, allow_nan=True))


GATE_KINDS = ("servo", "relay")  # the tags pydantic puts in an error's key path for a gate's kind


def describe(exc: ValidationError) -> str:
    """The first validation error as 'key.path: message', and how many more there are."""
    errors = exc.errors()
    error = errors[0]
    loc = error["loc"]
    gate = len(loc) > 2 and loc[0] == "gates"  # gates.NAME.KIND.key: drop KIND
    override = len(loc) > 2 and loc[:2] == ("costs", "overrides")  # costs.overrides.CLASS.BIN: as written
    where = ".".join(str(part) for i, part in enumerate(loc)
                     if not (gate and i == 2 and part in GATE_KINDS) and not (override and i == 1))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return (f"{where}: {message}" if where else message) + more


def resolve_paths(settings: Settings, base: Path) -> Settings:
    """Make the config's relative paths relative to the config file's folder."""

    def absolute(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base / p).resolve()

    return settings.model_copy(
        update={
            "model": settings.model.model_copy(update={"path": absolute(settings.model.path),
                                                       "shadow": absolute(settings.model.shadow)}),
            "simulator": settings.simulator.model_copy(update={"items": absolute(settings.simulator.items)}),
            "records": settings.records.model_copy(update={"path": absolute(settings.records.path),
                                                           "spill": absolute(settings.records.spill)}),
            "retrain": settings.retrain.model_copy(update={"folder": absolute(settings.retrain.folder)}),
            "mqtt": settings.mqtt.model_copy(update={key: absolute(getattr(settings.mqtt, key)) for key in
                                                     ("ca_file", "cert_file", "key_file", "password_file")}),
        }
    )
