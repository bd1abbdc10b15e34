"""Item detection: vision against the empty belt and a break-beam on a mock GPIO input."""


import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from edge.config import ConveyorSettings
from edge.sources import Frame
from edge.trigger import BeamTrigger, ItemTracker, VisionTrigger


def frame(rgb: np.ndarray, n: int, t: float) -> Frame:
    return Frame(rgb=rgb, timestamp=1000 + t, number=n, monotonic=t)


def belt(item_x: float | None, gain: float = 1.0, width: int = 320, height: int = 180) -> np.ndarray:
    """A plain belt with a bright square item centred at ``item_x`` (fraction of the frame width)."""
    rgb = np.full((height, width, 3), 80, np.uint8)
    rgb[::7] = 86  # a little texture
    if item_x is not None:
        x = int(item_x * width)
        rgb[50:130, max(0, x - 40) : max(0, x + 40)] = (200, 180, 60)
    return np.clip(rgb * gain, 0, 255).astype(np.uint8)


def test_vision_finds_one_item_per_pass_and_its_line_time():
    tracker = ItemTracker(VisionTrigger(None, min_area=0.1, diff_threshold=30, alpha=0.05), votes=3)
    items = []
    xs = [None] * 5 + list(np.linspace(0.1, 0.9, 17)) + [None] * 5 + list(np.linspace(0.1, 0.9, 17)) + [None] * 3
    for n, x in enumerate(xs):
        item = tracker.update(frame(belt(x), n, t=n * 0.1))
        if item:
            items.append(item)
    assert len(items) == 2
    assert items[0].t_line == pytest.approx((5 + 8) * 0.1, abs=0.06)  # x = 0.5 at the 9th item frame
    # 80 px long on a 320 px belt view crossing it at 0.5 views a second: 0.5 s to pass a point (measured a
    # little longer, never shorter: the detection's blur widens a sharp item by a pixel or so of its 96 each side)
    assert 0.5 <= items[0].passing_s <= 0.6
    best = items[0].best(3)
    assert best[0].number == 13 and {f.number for f in best} == {12, 13, 14}


def test_empty_belt_under_changing_light_is_never_an_item():
    c = ConveyorSettings()  # the default threshold
    tracker = ItemTracker(VisionTrigger(None, c.min_area, c.diff_threshold, c.background_alpha, c.band), votes=3)
    for n, gain in enumerate(np.linspace(0.7, 1.3, 60)):
        assert tracker.update(frame(belt(None, gain), n, t=n * 0.1)) is None
    assert tracker.flush() is None


def test_frames_mode_groups_every_votes_frames():
    tracker = ItemTracker(None, votes=2)
    got = [tracker.update(frame(belt(0.5), n, t=float(n))) for n in range(5)]
    assert [g is not None for g in got] == [False, True, False, True, False]
    assert tracker.flush() is None  # an incomplete item is not an item
    assert got[1].t_line == 0.0 and len(got[1].frames) == 2


def test_a_slow_item_keeps_a_bounded_number_of_frames():
    tracker = ItemTracker(VisionTrigger(None, min_area=0.1, diff_threshold=30, alpha=0.05), votes=3, keep=8)
    tracker.update(frame(belt(None), 0, 0.0))
    items = []
    for n in range(1, 300):  # crawls across the band (and out of it) in ~250 frames
        items.append(tracker.update(frame(belt(0.3 + n * 0.002), n, n * 0.1)))
        assert len(tracker._frames) <= 8
    (item,) = [i for i in items if i is not None]
    assert len(item.frames) == 8 and abs(item.best(1)[0].number - 100) <= 4  # the best-centred were kept


def test_break_beam_on_a_mock_gpio_input():
    factory = MockFactory()
    trigger = BeamTrigger(24, bounce_s=0.0, pin_factory=factory)
    tracker = ItemTracker(trigger, votes=3)
    pin = factory.pin(24)
    pin.drive_high()  # beam received
    items = []
    for n in range(30):
        if n == 10:
            pin.drive_low()  # beam broken by an item
        if n == 16:
            pin.drive_high()
        item = tracker.update(frame(belt(0.5), n, t=n * 0.1))
        if item:
            items.append(item)
    trigger.close()
    assert len(items) == 1 and [f.number for f in items[0].frames] == list(range(10, 16))
    assert items[0].t_line == pytest.approx(1.25)
    assert items[0].passing_s == pytest.approx(0.7)  # broken in frames 1.0-1.5 s: at most 0.9-1.6 s


def test_an_item_longer_than_the_roi_is_measured_past_its_sides():
    """The rough box ends at the ROI (180 px of the 320 px frame); the refined one reaches the item's ends."""
    tracker = ItemTracker(VisionTrigger(None, min_area=0.1, diff_threshold=30, alpha=0.05), votes=3)
    tracker.update(frame(belt(None), 0, 0.0))
    item = None
    for n, centre in enumerate(np.linspace(128, 192, 7), start=1):  # 64 px in 0.6 s
        rgb = belt(None)
        rgb[50:130, int(centre) - 100 : int(centre) + 100] = (200, 180, 60)  # 200 px long
        item = item or tracker.update(frame(rgb, n, n * 0.1))
    for n in range(8, 11):
        item = item or tracker.update(frame(belt(None), n, n * 0.1))
    assert item is not None and item.passing_s == pytest.approx(200 / (64 / 0.6), rel=0.05)
    assert item.t_line == pytest.approx(0.1 + (160 - 128) / (64 / 0.6), abs=0.02)  # centre at the frame's middle


def test_an_item_longer_than_the_frame_has_no_measured_length():
    tracker = ItemTracker(VisionTrigger(None, min_area=0.1, diff_threshold=30, alpha=0.05), votes=3)
    tracker.update(frame(belt(None), 0, 0.0))
    long = belt(None)
    item = None
    for n, x in enumerate(np.linspace(0.2, 0.8, 7), start=1):
        rgb = long.copy()
        rgb[50:130, : int(x * 320)] = (200, 180, 60)  # reaches past the frame's side in every frame
        item = item or tracker.update(frame(rgb, n, n * 0.1))
    for n in range(8, 11):
        item = item or tracker.update(frame(belt(None), n, n * 0.1))
    assert item is not None and item.passing_s is None  # the planner holds a gate for item_pass_s then


def test_vision_trigger_gives_the_items_box_to_the_frames_it_keeps():
    trigger = VisionTrigger(None, min_area=0.1, diff_threshold=30, alpha=0.05)
    tracker = ItemTracker(trigger, votes=3)
    assert tracker.update(frame(belt(None), 0, 0.0)) is None  # learns the empty belt
    for n in range(1, 4):
        tracker.update(frame(belt(0.5), n, n * 0.1))
    item = None
    for n in range(4, 7):
        item = item or tracker.update(frame(belt(None), n, n * 0.1))
    assert item is not None and all(f.item_box is not None for f in item.frames)
    x0, y0, x1, y1 = item.frames[0].item_box
    assert abs(x0 - 120) <= 8 and abs(x1 - 200) <= 8 and abs(y0 - 50) <= 8 and abs(y1 - 130) <= 8


def test_a_thin_item_on_a_wide_belt_is_an_item():
    """With the default settings, a thin item (a battery lying across the belt: 52 × 8 px in a 180 px ROI, 1.3 %
    of it, 4 % of the band) counts."""
    c = ConveyorSettings()
    trigger = VisionTrigger(None, c.min_area, c.diff_threshold, c.background_alpha, c.band)
    tracker = ItemTracker(trigger, votes=3)
    empty = np.full((180, 320, 3), 80, np.uint8)
    assert tracker.update(frame(empty, 0, 0.0)) is None
    items = []
    for n, x in enumerate(np.linspace(0.1, 0.9, 21), start=1):
        rgb = empty.copy()
        left = int(x * 320) - 26
        rgb[40:48, max(0, left) : left + 52] = (170, 170, 170)  # 52 × 8 px
        items.append(tracker.update(frame(rgb, n, n * 0.1)))
    items += [tracker.update(frame(empty, n, n * 0.1)) for n in range(22, 26)]
    assert len([i for i in items if i is not None]) == 1


def test_two_close_items_with_no_empty_frame_between_are_two_items():
    """80 px items 60 px apart, 20 px a frame: the band (54 px of the 180 px ROI) is never empty for two frames
    between them, but the second item's box lies wholly behind the first one's last."""
    tracker = ItemTracker(VisionTrigger(None, min_area=0.1, diff_threshold=30, alpha=0.05), votes=3)
    tracker.update(frame(belt(None), 0, 0.0))
    items = []
    for n in range(1, 40):
        rgb = belt(None)
        for centre in (n * 20 - 40, n * 20 - 180):  # the second item 140 px (one length and a 60 px gap) behind
            rgb[50:130, max(0, centre - 40) : max(0, centre + 40)] = (200, 180, 60)
        items.append(tracker.update(frame(rgb, n, n * 0.1)))
    items.append(tracker.flush())
    first, second = [i for i in items if i is not None]
    assert second.t_line - first.t_line == pytest.approx(0.7, abs=0.05)  # 140 px at 200 px/s
    assert first.passing_s == pytest.approx(0.4, abs=0.06) and second.passing_s == pytest.approx(0.4, abs=0.06)
    assert not {f.number for f in first.frames} & {f.number for f in second.frames}


def test_an_item_seen_first_in_part_then_whole_stays_one_item():
    """Its box's tail jumps back when its dark half shows, but the box still overlaps the last one."""
    tracker = ItemTracker(VisionTrigger(None, min_area=0.1, diff_threshold=30, alpha=0.05), votes=3)
    tracker.update(frame(belt(None), 0, 0.0))
    items = []
    for n in range(1, 30):
        rgb = belt(None)
        front = n * 20
        rgb[50:130, max(0, front - 50) : max(0, front)] = (200, 180, 60)
        if n > 8:  # the back half stands out from frame 9 on
            rgb[50:130, max(0, front - 100) : max(0, front - 50)] = (150, 150, 150)
        items.append(tracker.update(frame(rgb, n, n * 0.1)))
    items.append(tracker.flush())
    assert len([i for i in items if i is not None]) == 1
