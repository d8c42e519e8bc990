"""Hand-computed oracles for the exact metrics in `widedeep.metrics`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from widedeep.metrics import auc, ctr_metrics, gauc, logloss


def test_auc_counts_pairs_and_half_ties():
    # Positives score 0.9 and 0.3, negatives 0.8 and 0.1. Of the 4 (pos, neg) pairs,
    # (0.9, 0.8), (0.9, 0.1), (0.3, 0.1) are ordered right, (0.3, 0.8) wrong: 3/4.
    assert auc([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]) == pytest.approx(0.75)
    # A tie between a positive and a negative counts one half:
    # pos {0.5, 0.7}, neg {0.5, 0.2}: 0.5 vs 0.5 -> 1/2, the other three pairs right: 3.5/4.
    assert auc([1, 0, 1, 0], [0.5, 0.5, 0.7, 0.2]) == pytest.approx(0.875)
    assert auc([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)
    assert math.isnan(auc([1, 1], [0.2, 0.4]))  # one class only
    assert math.isnan(auc([], []))


# Four users, rows interleaved and group ids neither sorted nor contiguous:
#   user 3: labels 1 0 0,   scores 0.8 0.5 0.6 -> the positive beats both negatives: AUC 1,
#           3 impressions.
#   user 9: labels 0 1 1 0, scores 0.5 0.5 0.7 0.9 -> pos {0.5, 0.7} vs neg {0.5, 0.9}:
#           (0.5, 0.5) tie 1/2, (0.5, 0.9) 0, (0.7, 0.5) 1, (0.7, 0.9) 0: AUC 1.5/4 = 0.375,
#           4 impressions. (Its 0.5 ties user 3's 0.5: ties across users must not matter.)
#   user 5: labels 1 1,     scores 0.1 0.2 -> clicks only: skipped, impressions not counted.
#   user 1: label 0,        score 0.7      -> no click: skipped.
# GAUC = (3 * 1 + 4 * 0.375) / (3 + 4) = 4.5 / 7.
# (Counting the skipped users' impressions would give 4.5 / 10; an unweighted mean of
# the two AUCs (1 + 0.375) / 2 = 0.6875; the pooled AUC of all rows is another number.)
GAUC_ROWS = [
    # (user, label, score)
    (9, 0, 0.5),
    (3, 1, 0.8),
    (5, 1, 0.1),
    (9, 1, 0.5),
    (1, 0, 0.7),
    (3, 0, 0.5),
    (9, 1, 0.7),
    (5, 1, 0.2),
    (3, 0, 0.6),
    (9, 0, 0.9),
]


def _gauc_columns():
    groups, labels, scores = (np.array(c) for c in zip(*GAUC_ROWS))
    return labels, scores, groups


def test_gauc_hand_computed_skips_one_class_users():
    labels, scores, groups = _gauc_columns()
    assert gauc(labels, scores, groups) == pytest.approx(4.5 / 7)
    # The order of the rows and the spelling of the group keys do not matter.
    order = np.argsort(scores, kind="stable")[::-1]
    names = np.array([f"user-{g}" for g in groups], dtype=object)
    assert gauc(labels[order], scores[order], names[order]) == pytest.approx(4.5 / 7)
    # With a single group GAUC is the AUC.
    assert gauc(labels, scores, np.zeros(len(labels))) == pytest.approx(auc(labels, scores))


def test_gauc_of_one_class_groups_only_is_nan():
    assert math.isnan(gauc([1, 1, 0], [0.3, 0.2, 0.1], [1, 1, 2]))
    assert math.isnan(gauc([], [], []))
    with pytest.raises(ValueError, match="groups and labels differ"):
        gauc([1, 0], [0.5, 0.4], [1])


def test_logloss_hand_computed():
    # -(ln 0.8 + ln(1 - 0.2) + ln 0.5 + ln(1 - 0.9)) / 4
    # = (0.22314355 + 0.22314355 + 0.69314718 + 2.30258509) / 4 = 0.86050484
    assert logloss([1, 0, 1, 0], [0.8, 0.2, 0.5, 0.9]) == pytest.approx(0.86050484, abs=1e-8)
    assert math.isnan(logloss([], []))


def test_logloss_clips_certain_probabilities():
    # p = 1 for a non-click and p = 0 for a click are clipped to 1 - 1e-7 and 1e-7:
    # each costs -ln(1e-7) = 7 ln 10 = 16.11809565; the right certain answers cost
    # -ln(1 - 1e-7) = 1.00000005e-7 each. Mean: (2 * 16.11809565 + 2e-7) / 4.
    expected = (2 * 7 * math.log(10) + 2 * 1.00000005e-7) / 4  # 8.05904788
    assert logloss([1, 0, 1, 0], [0.0, 1.0, 1.0, 0.0]) == pytest.approx(expected, rel=1e-9)
    # The correct certain answers alone cost about 1e-7, not 0 and not NaN.
    assert logloss([1, 0], [1.0, 0.0]) == pytest.approx(1.00000005e-7, rel=1e-6)
    # A larger epsilon clips harder: p = 1 for a non-click becomes 0.9: -ln(0.1) = 2.30258509.
    assert logloss([0], [1.0], epsilon=0.1) == pytest.approx(2.30258509, abs=1e-8)


def test_ctr_metrics_combine_the_oracles():
    labels, scores, groups = _gauc_columns()
    result = ctr_metrics(labels, scores, groups)
    assert result["gauc"] == pytest.approx(4.5 / 7)
    # Pooled: positives {0.8, 0.1, 0.5, 0.7, 0.2}, negatives {0.5, 0.7, 0.5, 0.6, 0.9};
    # pairs ordered right: 0.8 -> 4, 0.1 -> 0, 0.5 -> 2 ties (1), 0.7 -> 3 + tie 1/2
    # (3.5), 0.2 -> 0: 8.5 / 25.
    assert result["auc"] == pytest.approx(8.5 / 25)
    assert result["ctr"] == pytest.approx(0.5)
    assert result["mean_prediction"] == pytest.approx(5.5 / 10)
    assert result["examples"] == 10
