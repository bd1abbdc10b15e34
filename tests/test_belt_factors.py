"""What each belt condition costs the model: the belt view set re-run with one condition eased."""

import numpy as np

from edge.belt import BeltConfig
from edge.config import BUNDLED_MODEL
from models.belt_factors import CONDITIONS, cut_out_items, factor_rows, table
from models.evaluate import VIEWS
from models.split import read_manifest, select
from tests.conftest import PROJECT


def test_the_as_is_condition_is_the_cards_belt_view_set():
    assert CONDITIONS["as is"] == {} and VIEWS["test_belt"].belt == BeltConfig()
    assert all(set(changes) <= set(BeltConfig.__dataclass_fields__) for changes in CONDITIONS.values())


def test_each_conditions_figures_add_up_on_real_photos(garbage12):
    entries = select(read_manifest(PROJECT / "models" / "split.csv"), "test")[::150]
    segmented = cut_out_items(garbage12, entries)
    rows = factor_rows(BUNDLED_MODEL, garbage12, entries, segmented, threads=2)
    assert [row.condition for row in rows] == list(CONDITIONS)
    n, cut = len(entries), int(segmented.sum())
    for row in rows:
        assert np.isclose(row.top1 - rows[0].top1, (row.gained - row.lost) / n)
        shares = [(row.cut_out, cut), (row.whole_photo, n - cut)]
        assert np.isclose(row.top1, sum(share * count for share, count in shares if count) / n)
    assert rows[0].gained == rows[0].lost == 0
    text = table(rows, cut, n - cut)
    assert text.count("\n") == len(rows) + 1 and f"cut out ({cut})" in text
