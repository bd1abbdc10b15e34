"""An item's votes: each frame's item crop, the k-th shown to the model in the k-th orientation."""

import numpy as np

from edge.app import Sorter
from edge.fakes import FakeClassifier
from edge.preprocess import prepare
from edge.sources import Frame
from edge.votes import ORIENTATIONS, oriented, vote_inputs
from tests.conftest import LABELS
from tests.test_loop import Frames


def test_the_orientations_keep_the_belts_axis_and_cycle():
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    got = [oriented(pixels, vote) for vote in range(len(ORIENTATIONS) + 1)]
    for turned, expected in zip(got, [pixels, pixels[:, ::-1], pixels[::-1], np.rot90(pixels, 2), pixels], strict=True):
        np.testing.assert_array_equal(turned, expected)
        assert turned.flags.c_contiguous and turned.shape == pixels.shape


def tagged_frame(x: int) -> np.ndarray:
    """A dark belt with a grey item whose top-left corner is red, the item's left edge at ``x``."""
    frame = np.full((240, 320, 3), 30, np.uint8)
    frame[80:160, x:x + 80] = 200
    frame[80:100, x:x + 20] = (255, 0, 0)
    return frame


def red_corner(pixels: np.ndarray) -> tuple[str, str]:
    """Where the red tag lies in a model input: (top|bottom, left|right)."""
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60)
    rows, cols = np.nonzero(red)
    height, width = red.shape
    return ("top" if rows.mean() < height / 2 else "bottom", "left" if cols.mean() < width / 2 else "right")


def test_an_items_frames_are_cropped_around_it_and_shown_in_turn_as_is_and_mirrored():
    frames = [Frame(tagged_frame(x), 0.0, n, 0.0, item_box=(x - 4, 76, x + 84, 164))
              for n, x in enumerate((120, 100, 140, 110))]
    inputs = vote_inputs(frames, (64, 64), crop="item")
    assert [red_corner(p) for p in inputs] == [("top", "left"), ("top", "right"), ("bottom", "left"),
                                               ("bottom", "right")]
    # the best-centred frame as is: the item crop around the trigger's box, unchanged
    np.testing.assert_array_equal(inputs[0], prepare(frames[0].rgb, (64, 64), crop="item", box=frames[0].item_box))


class Seen(FakeClassifier):
    """A fake classifier that keeps the inputs it was given."""

    def __init__(self) -> None:
        super().__init__(LABELS, input_size=(64, 64))
        self.inputs: list[np.ndarray] = []

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        self.inputs.append(pixels.copy())
        return super().probabilities(pixels)


def test_the_loop_shows_the_model_each_vote_of_an_item_in_its_own_orientation(tiny_settings):
    settings = tiny_settings.model_copy(update={"sorting": tiny_settings.sorting.model_copy(update={"votes": 3})})
    seen = Seen()
    with Sorter(settings, source=Frames(tagged_frame(120) for _ in range(3)), classifier=seen) as sorter:
        assert sorter.loop.run().items == 1
    assert [red_corner(p) for p in seen.inputs] == [("top", "left"), ("top", "right"), ("bottom", "left")]

