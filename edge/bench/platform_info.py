"""What the machine is: board (Raspberry Pi model), CPU, cores, frequency governor, load, temperature, versions."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from edge import __version__
from edge.runtime import interpreter_class

# ARM "CPU part" codes of the cores on Raspberry Pis; /proc/cpuinfo has no model name there.
ARM_CORES = {"0xd03": "Cortex-A53", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76"}
# CPU flags that decide int8 / float inference speed.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "asimd", "asimddp", "asimdhp", "i8mm")


def read_text(path: str) -> str | None:
    """A small system file's text, stripped (and without NUL bytes), or None if it cannot be read."""
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpuinfo() -> dict[str, str]:
    """The first value of each key in /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return fields


def board(fields: dict[str, str]) -> str | None:
    """The Raspberry Pi model (e.g. 'Raspberry Pi 5 Model B Rev 1.0'), or the device tree's model, or None."""
    model = read_text("/proc/device-tree/model")
    if model:
        return model
    return fields["model"] if "raspberry" in fields.get("model", "").lower() else None


def cpu_name(fields: dict[str, str]) -> str:
    """Model name of the CPU, e.g. 'AMD EPYC' or 'Cortex-A76'."""
    if fields.get("model name"):
        return fields["model name"]
    part = fields.get("cpu part", "")
    return ARM_CORES.get(part, f"ARM part {part}" if part else platform.processor() or platform.machine())


def temperature_c() -> float | None:
    """SoC temperature in °C (a hot Pi throttles and slows down), if the kernel reports one."""
    raw = read_text("/sys/class/thermal/thermal_zone0/temp")
    return round(int(raw) / 1000, 1) if raw and raw.lstrip("-").isdigit() else None


def versions(runtime: str) -> dict[str, str]:
    """Versions of Python and the packages the benchmark's figures depend on (matplotlib where installed)."""
    found = {"smartbin": __version__, "python": platform.python_version(), "runtime": runtime,
             "numpy": np.__version__, "opencv": cv2.__version__}
    with contextlib.suppress(metadata.PackageNotFoundError):
        found["matplotlib"] = metadata.version("matplotlib")
    return found


def platform_info() -> dict[str, object]:
    """Everything above as one JSON-ready dict."""
    fields = cpuinfo()
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    freq = "/sys/devices/system/cpu/cpu0/cpufreq/"
    max_khz = read_text(freq + "cpuinfo_max_freq")
    mem_kib = next((line.split()[1] for line in (read_text("/proc/meminfo") or "").splitlines()
                    if line.startswith("MemTotal:")), None)
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "board": board(fields),
        "system": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(fields),
        "cpu_flags": [flag for flag in SPEED_FLAGS if flag in flags],
        "cores": os.cpu_count(),
        "cores_usable": len(affinity) if affinity is not None else os.cpu_count(),
        "cpu_max_mhz": int(max_khz) // 1000 if max_khz and max_khz.isdigit() else None,
        "governor": read_text(freq + "scaling_governor"),
        "memory_mib": int(mem_kib) // 1024 if mem_kib else None,
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "temperature_c": temperature_c(),
        "versions": versions(interpreter_class()[1]),
    }
