import numpy as np
import pytest

from mosaicrec.evaluation import metrics as M

# One user, 4 relevant items; top-5 list with hits at ranks 1, 3 and 4.
HITS = np.array([[1, 0, 1, 1, 0]], dtype=bool)
NREL = np.array([4])


def test_precision_recall_hitrate_by_hand():
    assert M.precision(HITS, NREL, 5)[0] == pytest.approx(3 / 5)
    assert M.recall(HITS, NREL, 5)[0] == pytest.approx(3 / 4)
    assert M.precision(HITS, NREL, 2)[0] == pytest.approx(1 / 2)
    assert M.hit_rate(HITS, NREL, 1)[0] == 1.0
    assert M.hit_rate(np.zeros((1, 5), bool), NREL, 5)[0] == 0.0


def test_ndcg_by_hand():
    dcg = 1 / np.log2(2) + 1 / np.log2(4) + 1 / np.log2(5)
    idcg = 1 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(4) + 1 / np.log2(5)
    assert M.ndcg(HITS, NREL, 5)[0] == pytest.approx(dcg / idcg)
    # one relevant item found at rank 1 is a perfect ranking whatever the list length
    assert M.ndcg(np.array([[1, 0, 0]], bool), np.array([1]), 3)[0] == pytest.approx(1.0)


def test_map_by_hand():
    # precisions at the hits: 1/1, 2/3, 3/4; divided by min(4 relevant, K=5)
    assert M.average_precision(HITS, NREL, 5)[0] == pytest.approx((1 + 2 / 3 + 3 / 4) / 4)
    # at K=3 the hits are ranks 1 and 3, divided by min(4, 3)
    assert M.average_precision(HITS, NREL, 3)[0] == pytest.approx((1 + 2 / 3) / 3)


def test_mrr_by_hand():
    late = np.array([[0, 0, 1, 0]], bool)
    assert M.mrr(late, np.array([1]), 4)[0] == pytest.approx(1 / 3)
    assert M.mrr(late, np.array([1]), 2)[0] == 0.0


def test_user_with_no_relevant_items_scores_zero_not_nan():
    assert M.ndcg(np.zeros((1, 3), bool), np.array([0]), 3)[0] == 0.0
    assert M.average_precision(np.zeros((1, 3), bool), np.array([0]), 3)[0] == 0.0


def test_coverage_novelty_diversity_by_hand():
    top = np.array([[0, 1], [1, -1]])
    assert M.coverage(top, 4) == pytest.approx(2 / 4)
    pop = np.array([0.5, 0.25, 1.0, 1.0])
    assert M.novelty(top, pop) == pytest.approx((1 + 2 + 2) / 3)
    vectors = np.array([[1, 0], [0, 1], [1, 1], [1, 0]], float)
    assert M.intra_list_diversity(np.array([[0, 1]]), vectors) == pytest.approx(1.0)
    assert M.intra_list_diversity(np.array([[0, 3]]), vectors) == pytest.approx(0.0)


def test_rmse_mae_by_hand():
    assert M.rmse(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(np.sqrt((1 + 4) / 2))
    assert M.mae(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(1.5)
