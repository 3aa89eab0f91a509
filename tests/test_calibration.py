"""Calibration error, temperature scaling and the operating point, on known cases."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from medclass import calibration


def overconfident(n=4000, seed=0):
    """A binary model whose logits are three times too large: labels drawn from calibrated
    probabilities q, scores sigmoid(3 logit(q))."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0, 1.5, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    return y, 1 / (1 + np.exp(-3 * true_logit))


def test_ece_is_zero_for_calibrated_and_large_for_overconfident_scores():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, 20000) < p).astype(int)
    assert calibration.expected_calibration_error(y, p) < 0.02
    y, p = overconfident()
    assert calibration.expected_calibration_error(y, p) > 0.08


def test_temperature_scaling_recovers_the_temperature_and_keeps_the_ranking():
    y, p = overconfident()
    temperature = calibration.fit_temperature(y, p)
    assert temperature == pytest.approx(3.0, rel=0.15)
    scaled = calibration.apply_temperature(p, temperature)
    before = calibration.expected_calibration_error(y, p)
    assert calibration.expected_calibration_error(y, scaled) < before / 3
    np.testing.assert_array_equal(np.argsort(scaled), np.argsort(p))


def test_multiclass_temperature_keeps_the_predicted_class():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (500, 5))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scaled = calibration.apply_temperature(p, 2.5)
    np.testing.assert_allclose(scaled.sum(axis=1), 1, atol=1e-9)
    np.testing.assert_array_equal(scaled.argmax(axis=1), p.argmax(axis=1))
    assert scaled.max(axis=1).mean() < p.max(axis=1).mean()


def test_threshold_meets_the_sensitivity_target_on_its_own_data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    scores = np.clip(y * 0.3 + rng.uniform(0, 0.7, 500), 0, 1)
    for target in (0.9, 0.98, 1.0):
        threshold = calibration.threshold_for_sensitivity(y, scores, target)
        sensitivity = (scores[y == 1] >= threshold).mean()
        assert sensitivity >= target
        # The most specific such threshold: any higher one misses the target.
        assert (scores[y == 1] >= np.nextafter(threshold, 2)).mean() < target
    with pytest.raises(ValueError, match="target sensitivity 1.5"):
        calibration.threshold_for_sensitivity(y, scores, 1.5)


def test_reliability_diagram_renders_both_curves():
    y, p = overconfident(500)
    figure = calibration.plot_reliability(y, p, calibration.apply_temperature(p, 3.0))
    labels = [line.get_label() for line in figure.axes[0].lines]
    assert any(label.startswith("before (ECE") for label in labels)
    assert any(label.startswith("after temperature scaling") for label in labels)


def test_the_temperature_is_described_and_uninformative_scores_say_so():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    noise = rng.uniform(0.01, 0.99, 500)  # scores unrelated to the labels
    temperature = calibration.fit_temperature(y, noise)
    assert temperature == pytest.approx(calibration.TEMPERATURE_RANGE[1], rel=0.02)
    assert "edge of the search range" in calibration.describe_temperature(temperature)
    assert "it softens the validation" in calibration.describe_temperature(2.0)
    assert "it sharpens the validation" in calibration.describe_temperature(0.5)
    # a temperature near 1 says the model was about right, not over-confident
    assert "barely softens" in calibration.describe_temperature(1.056)


def test_the_prior_rule_moves_answers_towards_the_frequent_classes():
    from medclass import calibration as c

    prior = np.array([0.8, 0.2])
    probabilities = np.array([[0.45, 0.55], [0.1, 0.9]])
    assert c.shift_to_prior(probabilities, prior, 0) == pytest.approx(probabilities)
    shifted = c.shift_to_prior(probabilities, prior, 1)
    assert shifted.sum(axis=1) == pytest.approx([1, 1])
    assert shifted.argmax(axis=1).tolist() == [0, 1]  # the close call flips, the clear one stays
    y_true = np.array([0, 1])
    accuracy = lambda t, p: float(np.mean(t == p))  # noqa: E731
    assert c.fit_prior_exponent(y_true, probabilities, prior, accuracy) == pytest.approx(0.2)
