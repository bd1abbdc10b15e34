"""The gate planner: holds at arrival, late and too-close items, never a silent wrong bin."""

import itertools
import sys
import threading
import time

import pytest

from edge.actuate import GateScheduler
from edge.gates import Route
from edge.plan import GatePlace, Planner, overlaps

ROUTES = {"glass": Route("flap", -60.0), "paper": Route("flap", 30.0), "hazard": Route("pusher"),
          "rest": Route(None)}
PLACES = {"pusher": GatePlace(delay_s=2.0, settle_s=0.05), "flap": GatePlace(delay_s=3.0, settle_s=0.3)}


def planner() -> Planner:
    return Planner(ROUTES, PLACES, default_bin="rest", pass_s=0.5)


def test_hold_covers_the_items_passage_with_settle_time_ahead():
    plan = planner().plan(1, "glass", t_line=10.0, now=10.5)
    assert (plan.outcome, plan.bin, plan.gate_action) == ("planned", "glass", "flap→-60°")
    assert plan.hold.start == pytest.approx(13.0 - 0.25 - 0.3) and plan.hold.end == pytest.approx(13.25)
    assert plan.arrival == pytest.approx(13.0)


def test_a_measured_item_is_held_for_its_own_passage_and_the_margin():
    p = Planner(ROUTES, PLACES, default_bin="rest", pass_s=0.5, margin_s=0.1)
    long = p.plan(1, "glass", t_line=10.0, now=10.5, passing_s=1.0)  # 1 s to pass: 0.5 s either side of 13.0
    assert long.hold.start == pytest.approx(13.0 - 0.6 - 0.3) and long.hold.end == pytest.approx(13.6)
    short = p.plan(2, "paper", t_line=11.25, now=11.5, passing_s=0.2)  # a short one can follow a long one closely
    assert short.outcome == "planned" and short.hold.start == pytest.approx(14.25 - 0.2 - 0.3)
    unmeasured = p.plan(3, "hazard", t_line=12.0, now=12.5)
    assert unmeasured.hold.end - unmeasured.hold.start == pytest.approx(0.5 + 0.05)  # pass_s, and settle


def test_state_over_time_follows_the_holds():
    p = planner()
    p.plan(1, "hazard", t_line=0.0, now=0.1)
    assert p.state_at(1.6) == {"pusher": None, "flap": None}
    assert p.state_at(1.8) == {"pusher": True, "flap": None}
    assert p.state_at(2.3) == {"pusher": None, "flap": None}
    assert p.next_change(0.2) == pytest.approx(2.0 - 0.25 - 0.05)


def test_a_decision_after_the_gate_had_to_move_is_late_and_goes_to_the_default_bin():
    plan = planner().plan(1, "glass", t_line=0.0, now=2.6)
    assert (plan.outcome, plan.bin, plan.hold) == ("late", "rest", None)


def test_same_position_back_to_back_is_fine_different_position_is_too_close():
    p = planner()
    assert p.plan(1, "glass", t_line=0.0, now=0.1).outcome == "planned"
    assert p.plan(2, "glass", t_line=0.3, now=0.4).outcome == "planned"  # flap stays at -60°
    second = p.plan(3, "paper", t_line=0.9, now=1.0)  # flap cannot swing to +30° and back in time
    assert second.outcome == "too_close"


def test_an_item_that_would_ride_through_a_held_gate_is_booked_where_it_will_really_go():
    p = planner()
    p.plan(1, "glass", t_line=0.0, now=0.1)
    plan = p.plan(2, "rest", t_line=0.2, now=0.3)  # reaches the flap while it is held for item 1
    assert (plan.outcome, plan.bin) == ("too_close", "glass")


def test_an_earlier_gate_held_for_another_item_blocks_the_route():
    p = planner()
    p.plan(1, "hazard", t_line=1.0, now=1.1)  # pusher held around t = 3.0
    plan = p.plan(2, "glass", t_line=1.0, now=1.1)  # would pass the pusher at t = 3.0 too
    assert plan.outcome == "too_close" and plan.bin == "hazard"


def test_scheduler_drives_the_gates_at_the_planned_times():
    p = Planner(ROUTES, {"pusher": GatePlace(0.3, 0.05), "flap": GatePlace(0.5, 0.1)}, "rest", pass_s=0.1)
    calls: list[tuple[float, str, object]] = []
    start = time.monotonic()
    scheduler = GateScheduler(p, lambda gate, state: calls.append((time.monotonic() - start, gate, state))).start()
    p.plan(1, "glass", t_line=start, now=start)
    time.sleep(0.8)
    scheduler.stop()
    moves = [(round(t, 1), g, s) for t, g, s in calls if g == "flap"]
    assert moves[0][1:] == ("flap", -60.0) and moves[0][0] == pytest.approx(0.35, abs=0.06)
    assert moves[1][1:] == ("flap", None) and moves[1][0] == pytest.approx(0.55, abs=0.06)
    assert calls[-2:] == [(*calls[-2][:2], None), (*calls[-1][:2], None)]  # stop: all safe


def test_planner_is_safe_to_share_between_threads():
    """Four threads book conflicting positions of one gate at once (thread switches forced every microsecond):
    no booked hold is lost, and no two holds at different positions of the flap overlap."""
    p = planner()
    plans: list = []

    def plan_many(k: int) -> None:
        for n in range(300):
            plans.append(p.plan(k * 1000 + n, ("glass", "paper")[(n + k) % 2], t_line=n * 0.4, now=0.0))
            p.state_at(n * 0.4)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=plan_many, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    booked = {h.item for h in p.holds}
    assert all(plan.hold.item in booked for plan in plans if plan.outcome == "planned")
    flap = sorted((h for h in p.holds if h.gate == "flap"), key=lambda h: h.start)
    assert all(a.state == b.state or a.end <= b.start for a, b in itertools.pairwise(flap))



def test_same_gate_next_position_is_reached_straight_without_a_return_to_safe():
    p = planner()
    assert p.plan(1, "glass", t_line=0.0, now=0.1).outcome == "planned"  # flap held -60° until 3.25
    plan = p.plan(2, "paper", t_line=0.65, now=0.7)  # its +30° hold would start at 3.65 - 0.55 = 3.10 < 3.25
    # the swing would start while item 1 is passing; and item 2 cannot pass safe either (the flap is on its way
    # back when its front arrives at 3.40): the flap stays at -60° for it
    assert (plan.outcome, plan.bin) == ("too_close", "glass")
    p = planner()  # without item 2, which passes the flap safe at 3.65
    p.plan(1, "glass", t_line=0.0, now=0.1)
    plan = p.plan(3, "paper", t_line=0.85, now=0.9)  # hold from 3.85 - 0.55 = 3.30, 50 ms after item 1 passed
    assert plan.outcome == "planned" and plan.bin == "paper"
    assert p.state_at(3.26) == {"pusher": None, "flap": -60.0}  # no swing back to safe in the 50 ms gap
    assert p.state_at(3.31) == {"pusher": None, "flap": 30.0}
    assert p.state_at(4.11) == {"pusher": None, "flap": None}


def test_a_gate_stays_put_between_two_items_for_one_position_close_together():
    p = planner()
    p.plan(1, "glass", t_line=0.0, now=0.1)  # flap at -60° over [2.45, 3.25), back at safe by 3.55
    p.plan(2, "glass", t_line=0.9, now=1.0)  # -60° again from 3.35: leaving at 3.25 would only come back
    assert p.state_at(3.3) == {"pusher": None, "flap": -60.0}
    p = planner()
    p.plan(1, "glass", t_line=0.0, now=0.1)
    p.plan(2, "rest", t_line=0.6, now=0.7, passing_s=0.1)  # a short item passes the flap over [3.55, 3.65]
    assert p.plan(3, "glass", t_line=1.3, now=1.4).outcome == "planned"  # -60° from 3.75
    assert p.state_at(3.6) == {"pusher": None, "flap": None}  # safe for item 2 in between


def test_a_gap_long_enough_for_a_return_to_safe_goes_through_safe():
    p = planner()
    p.plan(1, "glass", t_line=0.0, now=0.1)  # ends 3.25, back at safe by 3.55
    assert p.plan(2, "paper", t_line=1.5, now=1.6).outcome == "planned"  # starts 4.5 - 0.55 = 3.95
    assert p.state_at(3.6) == {"pusher": None, "flap": None}


def test_scheduler_stop_after_the_gates_are_closed_is_quiet(settings):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from edge.app import planner_for
    from edge.errors import GateError
    from edge.gates import GateBank

    gates = GateBank(settings, MockFactory(pin_class=MockPWMPin))
    scheduler = GateScheduler(planner_for(settings, gates), gates.apply).start()
    gates.close()
    scheduler.stop()
    scheduler.stop()  # twice, as documented
    with pytest.raises(GateError, match="closed"):
        gates.apply("flap", 30.0)


@pytest.mark.parametrize("call", [
    lambda p: p.plan(1, "glass", t_line=0.0, now=0.0),
    lambda p: p.pass_through(2, t_line=0.0, now=0.0),
    lambda p: p.state_at(1.0),
    lambda p: p.next_change(0.0),
])
def test_every_planner_call_waits_for_the_lock_the_scheduler_shares(call):
    p = planner()
    done = threading.Event()
    with p.lock:  # as if another thread were in the middle of booking
        caller = threading.Thread(target=lambda: (call(p), done.set()))
        caller.start()
        assert not done.wait(0.2)  # the call waits: no half-booked state is ever read or written
    assert done.wait(5)
    caller.join()


def test_an_item_that_would_meet_a_gate_on_its_way_back_to_safe_keeps_it_where_it_was():
    p = planner()
    p.plan(1, "glass", t_line=0.0, now=0.1)  # flap at -60° over [2.45, 3.25), back at safe by 3.55
    plan = p.plan(2, "paper", t_line=0.45, now=0.5)  # passes the flap over [3.2, 3.7]: it would swing under it
    assert (plan.outcome, plan.bin) == ("too_close", "glass")  # so the flap stays at -60° until it has passed
    assert p.state_at(3.45) == p.state_at(3.69) == {"pusher": None, "flap": -60.0}
    assert p.state_at(3.7) == {"pusher": None, "flap": None}
    rest = p.plan(3, "rest", t_line=0.9, now=1.0)  # passes over [3.65, 4.15]: the flap is on its way back then
    assert (rest.outcome, rest.bin) == ("too_close", "glass") and p.state_at(4.1) == {"pusher": None, "flap": -60.0}


def slack_planner() -> Planner:
    return Planner(ROUTES, PLACES, default_bin="rest", pass_s=0.5, slack_s=0.4)


def test_a_hold_takes_slack_where_its_gate_is_free_and_gives_it_back_to_the_next_item():
    p = slack_planner()
    p.plan(1, "glass", t_line=0.0, now=0.1)  # firm: -60° over [2.45, 3.25); free around it: 0.4 s either side
    assert p.state_at(2.06) == p.state_at(3.64) == {"pusher": None, "flap": -60.0}
    assert p.state_at(2.04) == p.state_at(3.66) == {"pusher": None, "flap": None}
    rest = p.plan(2, "rest", t_line=0.9, now=1.0, passing_s=0.1)  # passes the flap safe over [3.85, 3.95]
    assert (rest.outcome, rest.bin) == ("planned", "rest")  # slack never makes an item too close
    # item 1 keeps half the free time between its return to safe (3.55) and item 2: until 3.70 at -60°, then safe
    assert p.state_at(3.39) == {"pusher": None, "flap": -60.0} and p.state_at(3.41) == {"pusher": None, "flap": None}
    paper = p.plan(3, "paper", t_line=1.5, now=1.6)  # firm +30° from 3.95, right after item 2: no slack before it
    assert paper.outcome == "planned"
    assert p.state_at(3.94) == {"pusher": None, "flap": None} and p.state_at(3.96) == {"pusher": None, "flap": 30.0}
    assert p.state_at(5.14) == {"pusher": None, "flap": 30.0}  # 0.4 s after its end (4.75): nothing follows


def test_slack_a_gate_has_already_used_is_firm():
    p = slack_planner()
    p.plan(1, "glass", t_line=0.0, now=0.1)  # -60° until 3.25, with slack until 3.65
    plan = p.pass_through(2, t_line=0.95, now=3.5)  # passes the flap over [3.7, 4.2]; at 3.5 the flap is still out
    assert (plan.outcome, plan.bin) == ("too_close", "glass")  # it cannot be safe by 3.7: the item goes to glass
    assert p.state_at(4.15) == {"pusher": None, "flap": -60.0}
    without = planner()  # no slack: the flap was back at safe by 3.55, the item rides through
    without.plan(1, "glass", t_line=0.0, now=0.1)
    assert without.pass_through(2, t_line=0.95, now=3.5).bin == "rest"


def test_with_slack_no_item_passes_a_gate_out_of_safe_and_no_two_positions_overlap():
    import random

    rng = random.Random(0)
    p = slack_planner()
    t = 0.0
    plans = []
    for n in range(400):
        t += rng.uniform(0.2, 1.2)
        plans.append(p.plan(n, rng.choice(list(ROUTES)), t_line=t, now=t + 0.1, passing_s=rng.uniform(0.1, 0.6)))
        for hold in p.holds:
            settle = PLACES[hold.gate].settle_s
            assert not any(q.gate == hold.gate and overlaps(hold.leaves, hold.returns + settle, q.start, q.end)
                           for q in p.passages)
        for gate in PLACES:
            spans = sorted((h.leaves, h.returns, h.state) for h in p.holds if h.gate == gate)
            assert all(a[1] <= b[0] or a[2] == b[2] for a, b in itertools.pairwise(spans))
    assert {plan.outcome for plan in plans} >= {"planned", "too_close"}
    assert any(h.lead > 0 and h.trail > 0 for h in p.holds)
