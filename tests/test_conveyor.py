"""End to end on the belt simulator with real photos: detection, timing, gates, and where items really went."""


import numpy as np
import pytest

from edge.bench.simulation import MOVING, PinHistory, reached_bin, servo_duty, simulate
from edge.config import BUNDLED_MODEL, ServoGate, load_settings
from edge.fakes import FakeClassifier
from tests.conftest import LABELS, make_settings


def belt_settings(tmp_path, tiny_model, garbage12, **sorting):
    """A fast small belt of real photos; trash shares the glass bin, so that every decision needs a gate."""
    bins = load_settings().model_dump()["bins"]
    bins["glass"]["classes"] = [*bins["glass"]["classes"], "trash"]
    bins["residual"]["classes"] = []
    return make_settings(
        tmp_path,
        model={"path": tiny_model},
        camera={"source": "synthetic", "fps": 30.0, "width": 320, "height": 240},
        conveyor={"trigger": "vision", "belt_speed_m_s": 0.5},
        simulator={"items": garbage12, "seed": 7},
        sorting={"votes": 3, "threshold": 0.0, **sorting},
        bins=bins,
    )


def run_belt(settings, items: int, classifier=None):
    """Records, truths in belt order, and the bins the items really reached, of the items the sorter saw.

    The trigger may miss an item the colour of the belt (it then has no record); it never sees one twice."""
    run = simulate(settings, items, timeout_s=30, classifier=classifier)
    seen = [r for r in run.items if r.record is not None]
    assert len(seen) == items and run.extra_records == 0 and len(run.items) <= items + 2
    return [r.record for r in seen], [r.truth for r in seen], [r.reached for r in seen]


def test_every_item_gets_one_record_and_reaches_the_bin_its_record_names(tmp_path, tiny_model, garbage12):
    settings = belt_settings(tmp_path, tiny_model, garbage12)
    records, truths, reached = run_belt(settings, items=8)
    assert [r["truth"] for r in records] == truths  # one record per physical item
    assert [r["bin"] for r in records] == reached  # the gates really routed each item where its record says
    assert any(r["gate_action"] != "none" for r in records)  # and gates did move
    assert all(0.1 < r["passing_s"] < 0.7 for r in records)  # 0.08-0.25 m items at 0.5 m/s, as measured
    assert {r["outcome"] for r in records} <= {"sorted", "too_close"}


def test_a_slow_classifier_makes_late_items_not_missorts(tmp_path, tiny_model, garbage12):
    settings = belt_settings(tmp_path, tiny_model, garbage12)
    battery = [1.0] + [0.0] * 11  # sure of "battery": the pusher's bin, if it were in time
    slow = FakeClassifier(LABELS, battery, latency_s=0.7)  # three votes: 2.1 s, past any gate's budget at 0.5 m/s
    records, truths, reached = run_belt(settings, items=4, classifier=slow)
    assert [r["truth"] for r in records] == truths  # no item missed while classifying
    assert [r["outcome"] for r in records] == ["late"] * 4
    assert [r["bin"] for r in records] == reached == [settings.default_bin] * 4


def test_items_close_together_never_reach_a_bin_other_than_their_records(tmp_path, tiny_model):
    """Drawn items (the vision trigger sees all of each), decided for the flap's bins in turn (glass, paper,
    packaging, textiles, one item each), 1.2 s apart: little time to return to safe between two items."""
    settings = belt_settings(tmp_path, tiny_model, None)
    settings = settings.model_copy(update={
        "simulator": settings.simulator.model_copy(update={"spacing_m": 0.3, "spacing_jitter": 0.0}),
        "conveyor": settings.conveyor.model_copy(update={"belt_speed_m_s": 0.25}),
    })
    flap_classes = [LABELS.index(c) for c in ("white-glass", "paper", "plastic", "clothes")]
    turns = FakeClassifier(LABELS, lambda call: np.eye(len(LABELS))[flap_classes[call // 3 % 4]])
    records, _, reached = run_belt(settings, items=10, classifier=turns)
    assert [r["bin"] for r in records] == reached  # the pins' history over each item's passage of each gate
    flap = [r for r in records if r["gate_action"].startswith("flap")]
    assert len({r["gate_action"] for r in flap}) >= 2  # the flap really went to several positions


def test_the_conveyor_benchmark_counts_every_item_once(tmp_path, tiny_model, garbage12):
    from edge.bench.conveyor import OUTCOMES, measure

    settings = belt_settings(tmp_path, tiny_model, garbage12)
    figures = measure(settings, garbage12, speed=0.5, items=4)
    assert figures["items"] >= 4 and figures["extra_records"] == 0
    assert sum(figures[o] for o in OUTCOMES) == pytest.approx(1.0)  # each item has one outcome, or was missed
    assert figures["as_recorded"] == 1.0 and figures["moving"] == 0.0  # these four photos are seen whole
    assert sum(b["items"] for b in figures["bins"].values()) == figures["items"]  # and each reached a bin


@pytest.mark.parametrize(("moves", "length_s", "reached"), [
    ([(13.8, -60.0)], 0.6, "glass"),  # at -60° and settled 0.1 s before the item's front
    ([(14.0, -60.0)], 0.6, MOVING),  # still moving when the front arrives
    ([(14.0, -60.0)], 0.0, "glass"),  # settled by the time a point would arrive
    ([(13.8, -60.0), (14.6, 0.0)], 0.6, MOVING),  # back to safe while the tail is still passing
    ([(13.8, -60.0), (14.9, 0.0)], 0.6, "glass"),  # back to safe once the tail has passed
    ([(13.8, -60.0), (14.4, 30.0)], 0.0, MOVING),  # swung to the next bin under the item
])
def test_an_item_reaches_a_bin_over_a_gate_that_is_settled_and_still_while_it_passes(moves, length_s, reached):
    settings = load_settings()  # at 0.2 m/s: the pusher 3 s after the camera line, the flap 4.5 s (settle 0.3 s)
    flap = settings.gates["flap"]
    assert isinstance(flap, ServoGate)
    times, angles = zip(*[(0.0, flap.safe_angle), *moves], strict=True)
    histories = {"flap": PinHistory(list(times), [servo_duty(flap, a) for a in angles]),
                 "pusher": PinHistory([0.0], [0.0])}
    assert reached_bin(settings, histories, t_line=10.0, ahead_s=length_s / 2, behind_s=length_s / 2) == reached
    instant = reached_bin(settings, histories, t_line=10.0, settled=False)  # as commanded when the centre arrives
    assert instant == {(14.4, 30.0): "packaging", (14.6, 0.0): "glass"}.get(moves[-1], "glass")


def test_a_gate_that_fails_mid_run_stops_sorting_into_gates_and_ends_the_run(tmp_path, garbage12):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from edge.app import Sorter
    from edge.errors import GateError
    from edge.sources.conveyor import simulator_for

    class FailingPin(MockPWMPin):
        """The flap's driver: raises from its 4th write on (a servo board that died)."""

        writes = 0

        def _set_state(self, value):
            if self.info.name == "GPIO18":
                FailingPin.writes += 1
                if FailingPin.writes >= 4:
                    raise OSError("I2C bus error")
            super()._set_state(value)

    settings = belt_settings(tmp_path, BUNDLED_MODEL, garbage12)
    settings = settings.model_copy(update={
        "conveyor": settings.conveyor.model_copy(update={"belt_speed_m_s": 0.25})})
    with Sorter(settings, source=simulator_for(settings), pin_factory=MockFactory(pin_class=FailingPin)) as sorter:
        with pytest.raises(GateError, match=r"^gate failure: gate flap failed: I2C bus error$"):
            sorter.loop.run(max_items=12)
        records = sorter.records.recent(50)[::-1]
        assert not sorter.gates.devices["pusher"].value  # the gates that still work are safe
    assert len(records) < 12  # the run ended at the failure, not after its 12 items
    errors = [r for r in records if r["outcome"] == "error"]  # items on their way at the failure, or decided after
    assert all(r["error"].startswith("gate failure: gate flap failed: ") for r in errors)
    assert all(r["error"].endswith(f"(on its way to {r['bin']})")
               or (r["bin"] == settings.default_bin and r["gate_action"] == "none") for r in errors)
    assert all(r["outcome"] != "error" for r in records[: len(records) - len(errors)])  # none sorted after them


def test_the_passage_benchmark_finds_the_trigger_measures_drawn_items_ends_closely():
    """Drawn items stand out whole from the belt: the trigger's measure of each one's front and tail is within
    a centimetre or two of the real ones, well inside the default margin."""
    from edge.bench.passage import passages, summary

    settings = load_settings()
    found = passages(settings, None, speed=0.4, items=12)
    assert len(found) == 12 and all(p.ends_m is not None for p in found)
    figures = summary(found, settings.conveyor.pass_margin_m)
    assert figures["unmeasured"] == 0 and figures["short_beyond_margin"] == 0.0
    assert -0.02 <= figures["p1"] <= figures["median"] <= figures["p95"] <= 0.03
    assert figures["margin_for_all"] <= 0.02


def test_the_passage_summary_counts_items_short_beyond_the_margin():
    from edge.bench.passage import Passage, summary

    found = [Passage("paper", (0.01, -0.06)), Passage("paper", (-0.02, 0.0)), Passage("glass", None)]
    figures = summary(found, margin_m=0.05, slack_m=0.005)
    assert figures["items"] == 3 and figures["unmeasured"] == 1
    assert figures["short_beyond_margin"] == 0.5 and figures["margin_for_all"] == pytest.approx(0.06)
    assert figures["short_beyond_slack"] == 0.5 and summary(found, 0.05, 0.02)["short_beyond_slack"] == 0.0
    assert figures["median"] == pytest.approx(-0.01)


@pytest.mark.parametrize("argv", [["--speeds", "0"], ["--speeds", "fast"], ["--items", "0"],
                                  ["--images", "/nonexistent"], ["--config", "/nonexistent.toml"]])
def test_the_belt_benchmarks_refuse_bad_arguments_with_one_line(monkeypatch, capsys, argv):
    from edge.bench.conveyor import belt_arguments

    monkeypatch.setattr("sys.argv", ["passage", *argv])
    with pytest.raises(SystemExit) as stop:
        belt_arguments("a belt benchmark", items=10, images_required=False)
    assert stop.value.code == 2 and "Traceback" not in capsys.readouterr().err
