"""Each metric against a hand-computed example.

Two groups: A (true 1 2 3 4, predicted 1 3 2 5) and B (true 2 1 4, predicted 1 2 3).
"""
import math

import numpy as np
import pytest

from tilewise.costmodel import metrics as M

TRUE = [1, 2, 3, 4, 2, 1, 4]
PRED = [1, 3, 2, 5, 1, 2, 3]
GROUPS = ["A"] * 4 + ["B"] * 3


def test_r2_on_latency():
    # mean 17/7; SS_tot = 51 - 289/7 = 68/7; SS_res = 0+1+1+1+1+1+1 = 6  ->  1 - 42/68
    assert M.r2(TRUE, PRED) == pytest.approx(13 / 34)
    assert M.r2([1, 2, 3], [1, 2, 3]) == 1.0
    assert math.isnan(M.r2([2, 2], [1, 3]))


def test_mape():
    # |err| / true: 0, 1/2, 1/3, 1/4, 1/2, 1, 1/4 -> sum 17/6 over 7 rows
    assert M.mape(TRUE, PRED) == pytest.approx(17 / 42)


def test_spearman_per_workload_then_averaged():
    # A: rank differences 0 1 1 0 -> 1 - 6*2/(4*15) = 0.8;  B: 1 1 0 -> 1 - 6*2/(3*8) = 0.5
    assert M.spearman(TRUE, PRED, GROUPS) == pytest.approx(0.65)


def test_kendall_per_workload_then_averaged():
    # A: 5 concordant, 1 discordant of 6 -> 4/6;  B: 2 and 1 of 3 -> 1/3
    assert M.kendall(TRUE, PRED, GROUPS) == pytest.approx(0.5)


def test_pairwise_accuracy():
    # A: 5 of 6 pairs ordered right;  B: 2 of 3
    assert M.pairwise(TRUE, PRED, GROUPS) == pytest.approx((5 / 6 + 2 / 3) / 2)


def test_pairwise_ties():
    # a tie in the prediction earns half a pair; pairs tied in the truth are not counted
    assert M.pairwise([1, 2, 3], [1, 1, 2], ["g"] * 3) == pytest.approx(2.5 / 3)
    assert M.pairwise([1, 1, 2], [3, 2, 1], ["g"] * 3) == 0.0


def test_top_k_score():
    # A: the model's pick (row 0) is the best -> 1;  B: it picks true 2 where 1 exists -> 0.5
    assert M.top_k(TRUE, PRED, GROUPS, 1) == pytest.approx(0.75)
    # top-2 of B holds rows 0 and 1, and row 1 is the best
    assert M.top_k(TRUE, PRED, GROUPS, 2) == 1.0
    assert M.top_k(TRUE, PRED, GROUPS, 5) == 1.0
    # A top-1 that finds a 4x slower kernel scores 1/4
    assert M.top_k([1.0, 4.0, 2.0], [3.0, 1.0, 2.0], ["g"] * 3, 1) == 0.25


def test_constant_prediction_has_no_correlation_and_uninformative_groups_are_skipped():
    groups = ["a"] * 3 + ["flat"] * 2 + ["single"]
    true = [1, 2, 3, 5, 5, 7]
    pred = [4, 4, 4, 1, 2, 9]
    assert M.spearman(true, pred, groups) == 0.0      # only group a counts, and it is constant
    assert M.kendall(true, pred, groups) == 0.0
    assert M.pairwise(true, pred, groups) == 0.5
    assert math.isnan(M.spearman([1, 1], [1, 2], ["g", "g"]))


def test_all_metrics_names_and_shape_checks():
    got = M.all_metrics(np.array(TRUE, float), np.array(PRED, float), GROUPS)
    assert tuple(got) == M.METRICS
    with pytest.raises(ValueError):
        M.r2([1, 2], [1])
    with pytest.raises(ValueError):
        M.spearman([1, 2], [1, 2], ["g"])
