"""Ranking, features and metrics of senet_demo.retrieval on hand-made vectors (no model involved)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from senet_demo.engine import Outputs
from senet_demo.retrieval import (
    ENSEMBLE,
    LOGSOFTMAX,
    CosineIndex,
    feature_matrix,
    l2_normalize,
    leave_one_out,
    match_threshold,
)


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference ranking, in float64 with a plain full sort."""
    similarity = unit(queries) @ unit(vectors).T
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(similarity, order, axis=1), order


# --- CosineIndex ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_faiss", [False, True])
def test_every_item_retrieves_itself_first_with_score_one(use_faiss):
    vectors = np.random.default_rng(1).standard_normal((200, 48))
    scores, indices = CosineIndex(vectors, use_faiss=use_faiss).search(vectors, 5)
    assert indices.shape == scores.shape == (200, 5)
    assert np.array_equal(indices[:, 0], np.arange(200))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("use_faiss", [False, True])
def test_near_duplicates_rank_right_after_the_original(use_faiss):
    rng = np.random.default_rng(2)
    originals = rng.standard_normal((30, 64))
    duplicates = originals + 0.02 * rng.standard_normal(originals.shape)  # ~2% noise: cosine ~0.9998
    others = rng.standard_normal((300, 64))
    index = CosineIndex(np.concatenate([originals, duplicates, others]), use_faiss=use_faiss)
    scores, indices = index.search(originals, 3)
    assert np.array_equal(indices[:, 0], np.arange(30))
    assert np.array_equal(indices[:, 1], np.arange(30) + 30)  # its own near-duplicate, not any other vector
    assert np.all(scores[:, 1] > 0.99) and np.all(scores[:, 2] < 0.7)  # random 64-d vectors: |cos| ~ 0.12


def test_scores_are_sorted_descending_and_equal_the_true_cosines():
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((500, 32))
    queries = rng.standard_normal((40, 32))
    scores, indices = CosineIndex(vectors).search(queries, 25)
    assert np.all(np.diff(scores, axis=1) <= 0)
    expected_scores, expected_indices = brute_force_top_k(vectors, queries, 25)
    assert np.array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_ranking_ignores_vector_length():
    """Cosine similarity: scaling a gallery vector by any positive factor changes nothing."""
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((100, 16))
    scaled = vectors * rng.uniform(0.01, 100.0, size=(100, 1))
    queries = rng.standard_normal((10, 16))
    assert np.array_equal(CosineIndex(vectors).search(queries, 10)[1], CosineIndex(scaled).search(queries, 10)[1])


def test_one_query_vector_and_k_larger_than_the_gallery():
    vectors = unit([[1, 0], [0, 1], [1, 1]])
    scores, indices = CosineIndex(vectors).search(np.array([1.0, 0.2]), 10)
    # cos to [1,0] = 1/|q| = 0.981; to [1,1]/sqrt2 = 1.2/(sqrt2*|q|) = 0.832; to [0,1] = 0.2/|q| = 0.196
    assert indices.tolist() == [[0, 2, 1]]
    np.testing.assert_allclose(scores[0], [1 / math.hypot(1, 0.2), 1.2 / (math.sqrt(2) * math.hypot(1, 0.2)),
                                           0.2 / math.hypot(1, 0.2)], atol=1e-6)


def test_faiss_hnsw_agrees_with_the_exact_matrix_product():
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((4000, 128)).astype(np.float32)
    exact, approximate = CosineIndex(vectors, use_faiss=False), CosineIndex(vectors, use_faiss=True)
    assert exact._faiss is None and approximate._faiss is not None  # two different code paths are compared

    _, self_hits = approximate.search(vectors, 1)
    assert np.array_equal(self_hits[:, 0], np.arange(4000))  # a stored vector always finds itself

    queries = rng.standard_normal((1000, 128)).astype(np.float32)
    _, exact_indices = exact.search(queries, 10)
    approx_scores, approx_indices = approximate.search(queries, 10)
    assert np.mean(exact_indices[:, 0] == approx_indices[:, 0]) >= 0.99
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_indices, approx_indices)])
    assert overlap >= 0.95
    assert np.all(np.diff(approx_scores, axis=1) <= 1e-6)
    # faiss's scores are the true cosines of the items it returns
    true = np.einsum("qd,qkd->qk", unit(queries), unit(vectors)[approx_indices])
    np.testing.assert_allclose(approx_scores, true, atol=1e-4)


def test_a_small_gallery_uses_the_exact_path_unless_faiss_is_asked_for():
    assert CosineIndex(np.eye(4))._faiss is None
    assert CosineIndex(np.eye(4), use_faiss=True)._faiss is not None


# --- feature_matrix ----------------------------------------------------------------------------------------------


def outputs(embedding, log_probs=(0.0, 0.0), model="m") -> Outputs:
    log_probs = np.asarray(log_probs, dtype=np.float32)
    return Outputs(model=model, probs=np.exp(log_probs), log_probs=log_probs,
                   embedding=np.asarray(embedding, dtype=np.float32))


def test_member_feature_is_its_normalised_embedding():
    members = {"a": [outputs([3, 4]), outputs([0, -2])], "b": [outputs([1, 1, 1]), outputs([5, 0, 0])]}
    np.testing.assert_allclose(feature_matrix(members, "a"), [[0.6, 0.8], [0.0, -1.0]], atol=1e-6)


def test_ensemble_is_the_renormalised_concatenation_of_normalised_members():
    # image 0: a = [3, 4] -> [0.6, 0.8]; b = [0, 0, 2] -> [0, 0, 1]; concatenated norm sqrt(2)
    # image 1: a = [0, 5] -> [0, 1];     b = [2, 0, 0] -> [1, 0, 0]; concatenated norm sqrt(2)
    members = {"a": [outputs([3, 4]), outputs([0, 5])], "b": [outputs([0, 0, 2]), outputs([2, 0, 0])]}
    r2 = math.sqrt(2)
    np.testing.assert_allclose(feature_matrix(members, ENSEMBLE),
                               [[0.6 / r2, 0.8 / r2, 0, 0, 1 / r2], [0, 1 / r2, 1 / r2, 0, 0]], atol=1e-6)
    # weight 2 on a: image 0 -> [1.2, 1.6, 0, 0, 1], norm sqrt(1.44 + 2.56 + 1) = sqrt(5)
    r5 = math.sqrt(5)
    weighted = feature_matrix(members, ENSEMBLE, {"a": 2.0})
    np.testing.assert_allclose(weighted[0], [1.2 / r5, 1.6 / r5, 0, 0, 1 / r5], atol=1e-6)


def test_logsoftmax_feature_uses_the_centred_log_probabilities():
    # the embeddings point elsewhere on purpose: only log_probs may matter
    # a: [-1, -2, -3] centred [1, 0, -1], norm sqrt(2); b: [0, -1, -5] centred [2, 1, -3], norm sqrt(14);
    # each unit-norm, then the concatenation (norm sqrt(2)) normalised
    members = {"a": [outputs([1, 0, 0], log_probs=[-1, -2, -3])], "b": [outputs([0, 1, 0], log_probs=[0, -1, -5])]}
    r2, r14 = math.sqrt(2), math.sqrt(14)
    expected = [1 / r2 / r2, 0, -1 / r2 / r2, 2 / r14 / r2, 1 / r14 / r2, -3 / r14 / r2]
    np.testing.assert_allclose(feature_matrix(members, LOGSOFTMAX), [expected], atol=1e-6)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_logsoftmax_scores_say_how_alike_two_predictions_are():
    """Raw log-softmax vectors share a large negative offset, so any two score about 0.99; centred, two images
    that predict different classes score low, and an image's score with itself stays 1."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2, 1000)) * 2.0
    logits[0, 7] += 12.0  # confident in class 7
    logits[1, 512] += 12.0  # confident in class 512
    log_probs = _log_softmax(logits)
    raw = unit(log_probs)
    assert raw[0] @ raw[1] > 0.95  # what the uncentred feature would say
    members = {"m": [outputs(np.zeros(3), log_probs=row) for row in log_probs]}
    matrix = feature_matrix(members, LOGSOFTMAX)
    assert matrix[0] @ matrix[1] < 0.5
    # softmax ignores a constant added to every logit, and so does the feature
    shifted = {"m": [outputs(np.zeros(3), log_probs=log_probs[0] - 40.0)]}
    np.testing.assert_allclose(feature_matrix(shifted, LOGSOFTMAX)[0], matrix[0], atol=1e-5)


# --- the match threshold -----------------------------------------------------------------------------------


def _best_same_label(vectors: np.ndarray, labels: list[str]) -> list[float]:
    """For each image whose label has another image: its best score against the others of its label (loops)."""
    vectors = unit(vectors)
    best = []
    for i, label in enumerate(labels):
        scores = [float(vectors[i] @ vectors[j]) for j, other in enumerate(labels) if j != i and other == label]
        if scores:
            best.append(max(scores))
    return best


def test_match_threshold_is_a_low_percentile_of_the_gallerys_own_best_matches():
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((4, 16))
    labels = [f"label{i % 4}" for i in range(40)] + ["alone"]  # "alone" has no second image: never a query
    vectors = np.stack([centres[i % 4] + rng.standard_normal(16) * (0.3 + i / 40) for i in range(40)]
                       + [rng.standard_normal(16)])
    best = _best_same_label(vectors, labels)
    assert len(best) == 40
    assert match_threshold(vectors, labels) == pytest.approx(float(np.percentile(best, 5)), abs=1e-5)
    assert match_threshold(vectors, labels, percentile=50) == pytest.approx(float(np.median(best)), abs=1e-5)
    # an image unlike every label scores below it; one of the gallery's own kinds scores above
    unlike = rng.standard_normal(16)
    unlike -= unit(centres).T @ (unit(centres) @ unlike)  # nothing of any centre left in it
    threshold = match_threshold(vectors, labels)
    assert (unit(unlike[None]) @ unit(vectors).T).max() < threshold
    assert (unit(centres[:1]) @ unit(vectors).T).max() > threshold


def test_match_threshold_needs_a_label_with_two_images():
    assert match_threshold(np.eye(3), ["a", "b", "c"]) is None
    assert match_threshold(np.eye(1), ["a"]) is None


def test_every_row_is_unit_norm():
    rng = np.random.default_rng(6)
    members = {name: [outputs(rng.standard_normal(dim) * rng.uniform(0.1, 50), rng.standard_normal(4))
                      for _ in range(20)] for name, dim in (("a", 8), ("b", 12))}
    for feature in (ENSEMBLE, LOGSOFTMAX, "a", "b"):
        matrix = feature_matrix(members, feature, {"a": 0.3, "b": 1.7})
        np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


def test_unknown_feature_is_a_value_error():
    with pytest.raises(ValueError, match="nope"):
        feature_matrix({"a": [outputs([1, 0])]}, "nope")


def test_l2_normalize_leaves_a_zero_vector_finite():
    assert np.all(np.isfinite(l2_normalize(np.zeros((1, 3)))))


# --- leave_one_out -----------------------------------------------------------------------------------------------


def at_angles(degrees) -> np.ndarray:
    """Unit vectors in the plane; for angles within 0..180 degrees the cosine falls as the gap grows."""
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1) * 3.0  # length 3: normalisation is its job


def test_leave_one_out_on_a_hand_ranked_case():
    angles = [0, 10, 30, 65, 102, 106, 170]
    labels = ["A", "A", "B", "A", "B", "B", "A"]
    # Each query ranks the other six by angular gap (no ties); 1 = same label.
    # q0 (0,A):   1(10) 2(30) 3(65) 4(102) 5(106) 6(170) -> 1 0 1 0 0 1  P@1 1  P@5 2/5  AP (1 + 2/3 + 3/6)/3 = 13/18
    # q1 (10,A):  0(10) 2(20) 3(55) 4(92)  5(96)  6(160) -> 1 0 1 0 0 1  P@1 1  P@5 2/5  AP 13/18
    # q2 (30,B):  1(20) 0(30) 3(35) 4(72)  5(76)  6(140) -> 0 0 0 1 1 0  P@1 0  P@5 2/5  AP (1/4 + 2/5)/2 = 13/40
    # q3 (65,A):  2(35) 4(37) 5(41) 1(55)  0(65)  6(105) -> 0 0 0 1 1 1  P@1 0  P@5 2/5  AP (1/4 + 2/5 + 3/6)/3 = 23/60
    # q4 (102,B): 5(4)  3(37) 6(68) 2(72)  1(92)  0(102) -> 1 0 0 1 0 0  P@1 1  P@5 2/5  AP (1 + 2/4)/2 = 3/4
    # q5 (106,B): 4(4)  3(41) 6(64) 2(76)  1(96)  0(106) -> 1 0 0 1 0 0  P@1 1  P@5 2/5  AP 3/4
    # q6 (170,A): 5(64) 4(68) 3(105) 2(140) 1(160) 0(170) -> 0 0 1 0 1 1 P@1 0  P@5 2/5  AP (1/3 + 2/5 + 3/6)/3 = 37/90
    quality = leave_one_out(at_angles(angles), labels)
    assert quality.queries == 7
    assert quality.precision_at_1 == pytest.approx(4 / 7)
    assert quality.precision_at_5 == pytest.approx(2 / 5)
    assert quality.mean_average_precision == pytest.approx(
        (13 / 18 + 13 / 18 + 13 / 40 + 23 / 60 + 3 / 4 + 3 / 4 + 37 / 90) / 7)  # = 209/360
    assert quality.as_dict() == {"P@1": round(4 / 7, 4), "P@5": 0.4, "mAP": round(209 / 360, 4), "queries": 7}


def test_leave_one_out_perfect_and_reversed_rankings():
    # Two tight, far-apart pairs: every neighbour is relevant first.
    perfect = leave_one_out(at_angles([0, 1, 90, 91]), ["x", "x", "y", "y"])
    assert (perfect.precision_at_1, perfect.mean_average_precision) == (1.0, 1.0)
    # P@5 with only 3 others: each query sees its 1 relevant among 3 -> 1/3
    assert perfect.precision_at_5 == pytest.approx(1 / 3)
    # Same labels put on opposite neighbours: the relevant item always comes last (rank 3) -> AP 1/3, P@1 0.
    reversed_ = leave_one_out(at_angles([0, 1, 90, 91]), ["x", "y", "y", "x"])
    # q0 (0,x): 1(y) 2(y) 3(x) -> AP 1/3; q1 (1,y): 0(x) 2(y,89) 3(x,90) -> AP 1/2;
    # q2 (90,y): 3(x) 1(y,89) 0(x) -> AP 1/2; q3 (91,x): 2(y) 1(y) 0(x) -> AP 1/3
    assert reversed_.precision_at_1 == 0.0
    assert reversed_.mean_average_precision == pytest.approx((1 / 3 + 1 / 2 + 1 / 2 + 1 / 3) / 4)


def test_an_image_alone_in_its_label_is_a_candidate_but_not_a_query():
    # a0 and a1 find each other (AP 1, P@1 1); the lone c cannot be answered right, so it asks nothing,
    # but it is still ranked: here it sits between a0 and a1's other neighbours and changes nothing.
    quality = leave_one_out(at_angles([0, 10, 50]), ["a", "a", "c"])
    assert quality.queries == 2
    assert (quality.precision_at_1, quality.mean_average_precision) == (1.0, 1.0)
    # c placed between a0 and a1 pushes each one's partner to rank 2: AP 1/2, P@1 0.
    between = leave_one_out(at_angles([0, 20, 10]), ["a", "a", "c"])
    assert (between.queries, between.precision_at_1) == (2, 0.0)
    assert between.mean_average_precision == pytest.approx(0.5)


def test_large_galleries_are_evaluated_on_an_even_sample_of_queries():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((60, 8)).astype(np.float32)
    labels = np.array([str(i % 6) for i in range(60)])
    sampled = leave_one_out(vectors, labels, max_queries=20)
    assert sampled.queries == 20
    # brute force over the evenly spaced queries 0, 3, 6, ... (every image's label repeats, so all can ask)
    unit_vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    chosen = np.linspace(0, 59, 20).round().astype(int)
    first_hits = []
    for q in chosen:
        similarity = unit_vectors @ unit_vectors[q]
        similarity[q] = -np.inf
        first_hits.append(labels[int(np.argmax(similarity))] == labels[q])
    assert sampled.precision_at_1 == pytest.approx(np.mean(first_hits))
    assert leave_one_out(vectors, labels).queries == 60


def test_a_gallery_where_no_label_repeats_cannot_be_evaluated():
    with pytest.raises(ValueError, match="at least two images"):
        leave_one_out(at_angles([0, 10, 50]), ["a", "b", "c"])


def test_leave_one_out_needs_two_images():
    with pytest.raises(ValueError):
        leave_one_out(at_angles([0]), ["a"])
