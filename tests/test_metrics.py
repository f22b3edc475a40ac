"""Metrics against scikit-learn, including ties and single-class slices."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from adbench_dbt.metrics import (SingleClassError, bootstrap_mean, inside_outside_ratio, pixel_ap, pixel_auroc,
                                 slice_metrics)

scores_and_labels = st.integers(2, 300).flatmap(lambda n: st.tuples(
    st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 2.0]) | st.floats(-5, 5), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n)))


@settings(max_examples=200, deadline=None)
@given(scores_and_labels)
def test_auroc_and_ap_equal_sklearn(data):
    scores, labels = np.array(data[0], dtype=np.float32), np.array(data[1])
    if labels.all() or not labels.any():
        with pytest.raises(SingleClassError):
            pixel_auroc(scores, labels)
        return
    assert pixel_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert pixel_ap(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_all_tied_scores_give_chance_auroc():
    labels = np.zeros(100, bool)
    labels[:10] = True
    assert pixel_auroc(np.ones(100), labels) == 0.5
    assert pixel_ap(np.ones(100), labels) == pytest.approx(0.1)


def test_single_class_and_bad_values_have_clear_messages():
    with pytest.raises(SingleClassError, match="slice-7: no positive"):
        pixel_auroc(np.random.rand(10), np.zeros(10, bool), where="slice-7")
    with pytest.raises(SingleClassError, match="no negative"):
        pixel_ap(np.random.rand(10), np.ones(10, bool))
    with pytest.raises(ValueError, match="NaN"):
        pixel_auroc(np.array([0.1, np.nan]), np.array([True, False]))


def test_slice_metrics_whole_slice_and_breast_only():
    rng = np.random.default_rng(0)
    heat = rng.random((40, 30)).astype(np.float32)
    labels = np.zeros((40, 30), bool)
    labels[10:20, 5:15] = True
    heat[labels] += 0.5
    breast = np.zeros((40, 30), bool)
    breast[:, :20] = True
    whole = slice_metrics(heat, labels, breast)
    assert whole["auroc"] == pytest.approx(roc_auc_score(labels.ravel(), heat.ravel()))
    inner = slice_metrics(heat, labels, breast, breast_only=True)
    assert inner["ap"] == pytest.approx(average_precision_score(labels[breast], heat[breast]))
    assert whole["auroc_breast"] == inner["auroc_breast"] == inner["auroc"] == pytest.approx(
        roc_auc_score(labels[breast], heat[breast]))
    expected_ratio = heat[labels & breast].mean() / heat[~labels & breast].mean()
    assert whole["inout_ratio"] == pytest.approx(expected_ratio)
    with pytest.raises(ValueError, match="does not match"):
        slice_metrics(heat[:10], labels, breast)


def test_inout_ratio_nan_without_breast_inside_box():
    labels = np.zeros((4, 4), bool)
    labels[0, 0] = True
    assert math.isnan(inside_outside_ratio(np.ones((4, 4)), labels, ~labels))


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    values = np.random.default_rng(3).random(50)
    a, b = bootstrap_mean(values, seed=1), bootstrap_mean(values, seed=1)
    assert a == b and a.low < a.mean < a.high and a.n == 50
    assert bootstrap_mean(np.array([np.nan, 0.5])).mean == 0.5


def test_large_slice_is_exact():
    rng = np.random.default_rng(0)
    scores = rng.random(2_000_000).astype(np.float32)
    labels = np.zeros(scores.size, bool)
    labels[rng.choice(scores.size, 20_000, replace=False)] = True
    scores[labels] += 0.1
    assert pixel_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
