"""Decisions on hand-made probability vectors: expected cost, ties, quarantine, the threshold rule of earlier
releases, calibration; the cost table and its config errors; per-bin figures against a hand count."""

from __future__ import annotations

import numpy as np
import pytest

from edge.bench.bins import figures
from edge.classifier import Prediction
from edge.config import load_settings
from edge.decision import REJECT, calibrate, cost_table, decider_for
from edge.errors import ConfigError
from models.calibrate import fit_temperature
from tests.conftest import LABELS, threshold_rule
from tests.test_config import default_text, write


def vector(**p: float) -> np.ndarray:
    """A probability vector over LABELS: the named classes, the rest spread evenly."""
    rest = (1 - sum(p.values())) / (len(LABELS) - len(p))
    return np.array([p.get(label, rest) for label in LABELS])


def decide(settings, probabilities: np.ndarray, temperature: float = 1.0):
    return decider_for(settings, LABELS, temperature).decide([Prediction(probabilities, LABELS)])


@pytest.fixture(scope="module")
def costs():
    return load_settings()  # the embedded default: [costs], bins.hazardous marked hazardous


def test_the_default_cost_table(costs):
    table = cost_table(costs, LABELS)
    columns = [*costs.bins, REJECT]
    at = lambda label, destination: table[LABELS.index(label), columns.index(destination)]  # noqa: E731
    assert at("green-glass", "glass") == 0 and at("green-glass", "paper") == 5 and at("green-glass", REJECT) == 1
    assert at("battery", "hazardous") == 0 and at("battery", "paper") == 100
    assert at("battery", REJECT) == 100  # the reject bin (residual) is not the hazardous bin
    assert at("trash", "residual") == 0 and at("trash", REJECT) == 1


def test_expected_cost_sends_an_item_split_between_two_classes_of_one_bin_to_that_bin(costs):
    decision = decide(costs, vector(metal=0.45, plastic=0.45, battery=0.0))
    # packaging: 5 * 0.1 = 0.5 expected, cheaper than a reject (1): the threshold rule would reject (0.45 < 0.6)
    assert (decision.bin, decision.rejected, decision.reason) == ("packaging", False, "top")
    assert decision.expected_cost == pytest.approx(0.5)
    old = decide(threshold_rule(costs), vector(metal=0.45, plastic=0.45, battery=0.0))
    assert (old.bin, old.rejected, old.reason, old.expected_cost) == ("residual", True, "below threshold", None)


def test_an_uncertain_item_is_rejected_and_a_cheap_mistake_is_taken(costs):
    unsure = decide(costs, vector(paper=0.5, **{"green-glass": 0.4}, battery=0.0))
    assert (unsure.bin, unsure.rejected, unsure.reason) == ("residual", True, "cost")
    assert unsure.expected_cost == pytest.approx(1.0)
    cheap = costs.model_copy(update={"costs": costs.costs.model_copy(update={"overrides": {"paper": {"glass": 0.0}}})})
    moved = decide(cheap, vector(paper=0.5, **{"green-glass": 0.4}, battery=0.0))
    assert (moved.bin, moved.reason, moved.label) == ("glass", "cost", "paper")  # not the top class's bin


def test_cost_ties_go_to_the_top_class_bin_then_to_the_reject_bin(costs):
    def only(**p: float) -> np.ndarray:
        return np.array([p.get(label, 0.0) for label in LABELS])

    # paper 0.8, metal 0.2: the paper bin costs 5 * 0.2 = 1.0, as much as a reject: the top class's bin wins
    tie = decide(costs, only(paper=0.8, metal=0.2))
    assert (tie.bin, tie.reason, tie.expected_cost) == ("paper", "top", pytest.approx(1.0))
    # top class paper (its bin 3.25); packaging 5 * 0.35 = 1.75, as much as a reject at 1.75: the reject bin wins
    dear = costs.model_copy(update={"costs": costs.costs.model_copy(update={"reject": 1.75})})
    split = decide(dear, only(paper=0.35, metal=0.33, plastic=0.32))
    assert (split.label, split.bin, split.rejected, split.reason) == ("paper", "residual", True, "cost")
    cheaper = costs.model_copy(update={"costs": costs.costs.model_copy(update={"reject": 1.8})})
    assert decide(cheaper, only(paper=0.35, metal=0.33, plastic=0.32)).bin == "packaging"


def test_quarantine_wins_over_a_confident_top_class(costs):
    decision = decide(costs, vector(paper=0.9, battery=0.06))
    assert (decision.label, decision.bin, decision.reason) == ("paper", "hazardous", "quarantine")
    assert decision.expected_cost == pytest.approx(5 * 0.94)
    below = decide(costs, vector(paper=0.96, battery=0.004))
    assert below.bin == "paper" and below.reason == "top"
    # the threshold rule with a hazardous bin quarantines too; without one (earlier releases) it does not
    kept = threshold_rule(costs).model_copy(update={"bins": costs.bins})
    assert decide(kept, vector(paper=0.9, battery=0.06)).reason == "quarantine"
    assert decide(threshold_rule(costs), vector(paper=0.9, battery=0.06)).bin == "paper"


def test_without_costs_the_decision_is_that_of_earlier_releases(costs):
    """The threshold rule, item for item, against the rule as it was: top class's bin at >= threshold."""
    old = threshold_rule(costs)
    bin_of = old.bin_of()
    rng = np.random.default_rng(1)
    for alpha in (0.2, 1.0, 5.0):
        for p in rng.dirichlet(np.full(len(LABELS), alpha), 200):
            decision = decide(old, p, temperature=0.5)  # a card's temperature does not touch thresholds
            top = LABELS[int(p.argmax())]
            expected = bin_of[top] if p.max() >= old.sorting.threshold else old.sorting.reject_bin
            assert (decision.bin, decision.label, decision.confidence) == (expected, top, p.max())
            assert decision.rejected == (p.max() < old.sorting.threshold)


def test_per_class_thresholds(costs):
    old = threshold_rule(costs, thresholds={"trash": 0.9})
    assert decide(old, vector(trash=0.8)).rejected and not decide(old, vector(paper=0.8)).rejected


def test_calibration_is_temperature_scaling():
    p = np.array([[0.7, 0.2, 0.1, 0.0]])
    assert calibrate(p, 1.0) is p
    sharper = calibrate(p, 0.5)
    assert sharper.sum() == pytest.approx(1) and sharper[0, 0] > 0.7 and sharper[0, 3] == 0
    assert sharper[0, :3] == pytest.approx(p[0, :3] ** 2 / (p[0, :3] ** 2).sum())


def test_fit_temperature_recovers_a_known_one():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2.5, (4000, 6))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = np.array([rng.choice(6, p=row) for row in true])
    overconfident = calibrate(true, 0.5)  # a model twice as sure as it should be
    fit = fit_temperature(overconfident, truth)
    assert fit["temperature"] == pytest.approx(2.0, abs=0.15)
    assert fit["nll"][1] < fit["nll"][0] and fit["ece"][1] < fit["ece"][0]


@pytest.mark.parametrize("section, message", [
    ("[costs]\nwrong_bin = -1", "costs.wrong_bin"),
    ("[costs]\nreject = \"1\"", "costs.reject"),
    ("[costs]\nrejekt = 1", "costs.rejekt: unknown key"),
    ("[costs]\nbatery.residual = 100", "costs.batery: 'batery' is not a class of any bin"),
    ("[costs]\nbattery.residul = 100", "costs.battery.residul: 'residul' is not a bin (nor 'reject')"),
    ("[costs]\nbattery.residual = \"high\"", "costs.battery.residual"),
    ("[sorting]\nthresholds = { trash = 0.9 }", "sorting.thresholds: per-class thresholds apply without [costs]"),
    ("[sorting]\nquarantine_p = 0", "sorting.quarantine_p"),
])
def test_bad_costs_are_one_line_naming_the_key(tmp_path, section, message):
    header, line = section.split("\n")
    text = default_text().replace(f"\n{header}\n", f"\n{header}\n{line}\n", 1)
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_override_reads_from_toml_and_survives_a_round_trip(tmp_path):
    text = default_text().replace("\n[costs]\n", "\n[costs]\nbattery.reject = 20\nshoes.residual = 1.0\n", 1)
    settings = load_settings(write(tmp_path, text))
    assert settings.costs is not None and settings.costs.overrides == {"battery": {"reject": 20.0},
                                                                       "shoes": {"residual": 1.0}}
    table = cost_table(settings, LABELS)
    assert table[LABELS.index("battery"), -1] == 20 and table[LABELS.index("shoes"), list(settings.bins)
                                                              .index("residual")] == 1


def test_per_bin_figures_against_a_hand_count(costs):
    """Six items decided by the default rule; what lands where counted by hand."""
    items = [  # (truth, probabilities) -> where it lands
        ("battery", vector(battery=0.9)),                      # hazardous (right)
        ("battery", vector(metal=0.95, battery=0.0)),          # packaging: leaked
        ("paper", vector(paper=0.9, battery=0.07)),            # hazardous (quarantine): wrong
        ("paper", vector(paper=0.95, battery=0.0)),            # paper (right)
        ("metal", vector(metal=0.5, paper=0.4, battery=0.0)),  # rejected: residual, wrong
        ("trash", vector(trash=0.95, battery=0.0)),            # residual (right)
    ]
    truth = np.array([LABELS.index(t) for t, _ in items])
    result = figures(decider_for(costs, LABELS), costs, np.stack([p for _, p in items]), truth)
    bins = result["bins"]
    assert bins["hazardous"] == {"items": 2, "belonging": 2, "purity": 0.5, "recall": 0.5}
    assert bins["packaging"] == {"items": 1, "belonging": 1, "purity": 0.0, "recall": 0.0}
    assert bins["paper"] == {"items": 1, "belonging": 2, "purity": 1.0, "recall": 0.5}
    assert bins["residual"] == {"items": 2, "belonging": 1, "purity": 0.5, "recall": 1.0}
    assert bins["glass"] == {"items": 0, "belonging": 0, "purity": None, "recall": None}
    assert (result["hazardous_items"], result["hazardous_leaked"], result["hazardous_leak"]) == (2, 1, 0.5)
    assert result["reject_rate"] == pytest.approx(1 / 6) and result["right_bin"] == pytest.approx(3 / 6)
    # realised costs: 0 + battery in packaging 100 + paper in hazardous 5 + 0 + reject 1 + 0
    assert result["cost_per_1000"] == pytest.approx(106 / 6 * 1000)
    assert result["reasons"] == {"top": 3, "cost": 1, "quarantine": 2, "below threshold": 0}
