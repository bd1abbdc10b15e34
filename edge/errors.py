"""One exception root for smartbin; the CLI turns any of these into one line and an exit code.

    SmartbinError
    ├── ConfigError (ValueError)            bad or inconsistent configuration   exit 2
    ├── ModelError
    │   ├── ModelCardError (ValueError)     card missing, malformed, or not matching the model
    │   └── RuntimeMissingError (ImportError)  neither ai_edge_litert nor tflite_runtime installed
    ├── ImageError (ValueError)             an image file that cannot be decoded
    │   └── ImageTooLarge                   over the pixel cap (read from its header, before decoding)
    ├── CameraError (OSError)
    │   ├── CameraStalled (TimeoutError)    no frame within the stall timeout
    │   └── CameraBusy                      another process holds the camera
    ├── GateError                           a gate device could not be set up or driven
    ├── ServiceRunning                      the smartbin service holds the camera / gates asked for
    ├── PortError (OSError)                 the web or metrics port cannot be bound (busy: a restart may help)
    └── RecordError (OSError)               the item database cannot be written or read (e.g. disk full);
                                            carries SQLite's error name and whether it may pass (``transient``)
"""


class SmartbinError(Exception):
    """Root of every error smartbin raises on purpose."""

    exit_code = 1


class ConfigError(SmartbinError, ValueError):
    """The configuration is invalid; the message names the key."""

    exit_code = 2


class ModelError(SmartbinError):
    """The model cannot be loaded or run."""


class ModelCardError(ModelError, ValueError):
    """The model card is missing, malformed, or does not match the model."""


class RuntimeMissingError(ModelError, ImportError):
    """No TFLite runtime (ai_edge_litert or tflite_runtime) is installed."""


class ImageError(SmartbinError, ValueError):
    """An image file cannot be read or decoded."""


class ImageTooLarge(ImageError):
    """An image whose header claims more pixels than the cap; refused before it is decoded."""


class DeadFrame(SmartbinError):
    """A frame of an item carries no picture (flat or empty): the item is recorded ``error``."""


class CameraError(SmartbinError, OSError):
    """The frame source failed."""


class CameraStalled(CameraError, TimeoutError):
    """The frame source delivered no frame within its stall timeout."""


class CameraBusy(CameraError):
    """Another process holds the camera."""


class GateError(SmartbinError):
    """A gate device could not be set up or driven."""


class ServiceRunning(SmartbinError):
    """The smartbin service is running and holds the camera or the gates that a command asked for."""


class PortError(SmartbinError, OSError):
    """A web or metrics port cannot be bound: busy for now, or not permitted. Not a configuration error, so
    that systemd restarts the service (a port held for a moment at boot frees up)."""


class RecordError(SmartbinError, OSError):
    """The item database could not be written or read. ``code``: SQLite's error name (``SQLITE_FULL``,
    ``SQLITE_BUSY_SNAPSHOT``, ...) where SQLite gave one; ``transient``: whether the failure may clear by itself
    (a full disk, a lock, an I/O error), so that what failed is worth trying again later."""

    def __init__(self, message: str, code: str | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient
