"""The frames' memory: the most a config's frames can hold against the machine's memory, refused in one line by
``smartbin check`` and ``smartbin run``; the items waiting for the classifier hold only the frames they need."""

import subprocess
import sys

import numpy as np
import pytest

from edge.config import DEFAULT_CONFIG, load_settings, parse_settings
from edge.errors import ConfigError
from edge.footprint import MIB, check_footprint, footprint, frames_held, memory_total
from edge.sources import Frame
from edge.trigger import Item

GIB = 1024 * MIB


def settings_with(**camera):
    data = load_settings().model_dump(mode="json")
    data["camera"].update(camera)
    return parse_settings(data)


def test_the_hq_camera_fits_a_4_gb_pi_and_not_a_2_gb_one():
    hq = settings_with(source="picamera2", width=4056, height=3040)
    assert check_footprint(hq, total=4 * GIB).startswith("up to 2176 MiB (56 frames of 4056x3040 at 35.3 MiB) of")
    with pytest.raises(ConfigError, match=r"^camera.width, camera.height: 4056x3040 needs up to 2176 MiB .* more "
                                          r"than this machine's 2048 MiB: use a smaller camera size"):
        check_footprint(hq, total=2 * GIB)
    assert check_footprint(settings_with(source="picamera2"), total=1 * GIB)  # 1280x720 fits a 1 GB Pi


def test_the_simulator_lores_votes_and_the_web_upload_count():
    camera = footprint(settings_with(source="picamera2"))
    assert footprint(settings_with()) - camera == 1280 * 720 * 42  # the simulator's belt, noise and rendering
    assert footprint(settings_with(source="picamera2", lores=[640, 360])) - camera == 56 * 640 * 360 * 3
    data = settings_with(source="picamera2").model_dump(mode="json")
    data["sorting"]["votes"] = 8
    data["web"]["enabled"] = True
    more = parse_settings(data)
    assert frames_held(more) == 4 + 16 + 9 * 9
    assert footprint(more) - camera == (101 - 56) * 1280 * 720 * 3 + 20_000_000 * 6


def test_memory_total_reads_meminfo(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:        3884564 kB\nMemFree:          123 kB\n")
    assert memory_total(tmp_path / "meminfo") == 3884564 * 1024
    assert memory_total(tmp_path / "missing") is None
    assert memory_total() is not None and memory_total() > 256 * MIB  # this machine's


def write(tmp_path, camera_lines):
    text = DEFAULT_CONFIG.read_text().replace("[camera]\n", f"[camera]\n{camera_lines}\n", 1)
    text = text.replace("[gpio]\n", '[gpio]\npin_factory = "mock"\n', 1)
    text = text.replace("[records]\n", f'[records]\npath = "{tmp_path / "items.db"}"\n', 1)
    path = tmp_path / "smartbin.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("command", ["check", "run"])
def test_an_8192_camera_is_refused_in_one_line(tmp_path, command):
    config = write(tmp_path, "width = 8192\nheight = 8192")
    result = subprocess.run([sys.executable, "-m", "edge.cli", command, "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "smartbin: smartbin.toml: camera.width: Input should be less than or equal to 4656 (and 1 more error)"]
    assert not (tmp_path / "items.db").exists()  # refused before anything started


def test_check_gives_the_footprint_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edge.cli", "check", "--config", str(write(tmp_path, ""))],
                            capture_output=True, text=True, timeout=120)
    line = next(line for line in result.stdout.splitlines() if line.startswith("memory"))
    assert line.startswith(f"memory   OK   up to {footprint(load_settings()) / MIB:.0f} MiB (56 frames of "
                           "1280x720 at 2.6 MiB) of ")


def frame(number: int) -> Frame:
    return Frame(np.zeros((2, 2, 3), np.uint8), 0.0, number, float(number))


def test_an_item_waiting_for_the_classifier_keeps_its_best_frames_and_its_first():
    item = Item([frame(n) for n in range(10, 26)], 18.0, [abs(n - 18.0) for n in range(10, 26)], passing_s=0.5)
    trimmed = item.trimmed(3)
    assert [f.number for f in trimmed.frames] == [10, 17, 18, 19]
    assert [f.number for f in trimmed.best(3)] == [f.number for f in item.best(3)] and trimmed.first.number == 10
    assert (trimmed.t_line, trimmed.passing_s, len(item.frames)) == (18.0, 0.5, 16)
    assert [f.number for f in Item([frame(5)], 5.0, [0.0]).trimmed(3).frames] == [5]
