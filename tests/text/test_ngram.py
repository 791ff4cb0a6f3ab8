"""Kneser-Ney n-gram baseline: hand-computed probabilities, a slow reference, bpc, order choice,
save/load and bad arguments."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from trainyard.tasks.text.corpus import Vocabulary
from trainyard.tasks.text.ngram import (
    FALLBACK_DISCOUNT,
    MIN_DISCOUNT,
    KneserNeyLM,
    choose_order,
    modified_kneser_ney_discounts,
)

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jam".split()


def _sentences(seed: int, words: int) -> str:
    """Returns pseudo-English: random words of WORDS, a full stop every eight."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(WORDS, size=words)
    return " ".join(w + ("." if i % 8 == 7 else "") for i, w in enumerate(chosen)) + "\n"


@pytest.fixture(scope="module")
def text_streams() -> tuple[np.ndarray, np.ndarray, int]:
    """Returns train and held-out ids of pseudo-English, and the vocabulary size."""
    train, held_out = _sentences(0, 1500), _sentences(1, 300)
    vocabulary = Vocabulary.from_text(train)
    return vocabulary.encode(train), vocabulary.encode(held_out), vocabulary.size


def _reference_distribution(
    train: list[int], order: int, vocab_size: int, context: list[int]
) -> np.ndarray:
    """Returns P(. | context) computed straight from the formula with Python dicts (slow)."""

    def adjusted_counts(k: int) -> dict[tuple[int, ...], int]:
        grams = [tuple(train[s : s + k]) for s in range(len(train) - k + 1)]
        if k == order:
            return Counter(grams)
        left: dict[tuple[int, ...], set] = {}
        for s, gram in enumerate(grams):
            left.setdefault(gram, set()).add(train[s - 1] if s else "stream start")
        return {gram: len(neighbours) for gram, neighbours in left.items()}

    context = context[len(context) - min(len(context), order - 1) :]
    probs = np.full(vocab_size, 1.0 / vocab_size)
    for k in range(1, len(context) + 2):
        counts = adjusted_counts(k)
        of_counts = Counter(counts.values())
        discounts = modified_kneser_ney_discounts([of_counts[j] for j in (1, 2, 3, 4)])
        history = tuple(context[len(context) - k + 1 :])
        following = {gram[-1]: c for gram, c in counts.items() if gram[:-1] == history}
        total = sum(following.values())
        if total == 0:
            continue  # an unseen context passes all its mass down
        removed = {w: discounts[min(c, 3) - 1] for w, c in following.items()}
        backoff = sum(removed.values()) / total
        probs = np.array(
            [
                (following.get(w, 0) - removed.get(w, 0.0)) / total + backoff * probs[w]
                for w in range(vocab_size)
            ]
        )
    return probs


def test_discounts_follow_chen_and_goodman_and_fall_back_when_counts_are_missing():
    # n1..n4 = 10, 5, 3, 2: Y = 10 / (10 + 2*5) = 0.5; D1 = 1 - 2*0.5*5/10 = 0.5;
    # D2 = 2 - 3*0.5*3/5 = 1.1; D3+ = 3 - 4*0.5*2/3 = 5/3.
    assert modified_kneser_ney_discounts([10, 5, 3, 2]) == pytest.approx((0.5, 1.1, 5 / 3))
    # n3 = 0 leaves D2 and D3+ without an estimate: they take the previous discount.
    assert modified_kneser_ney_discounts([1, 2, 0, 0]) == pytest.approx((0.2, 0.2, 0.2))
    # No n2 means no Y at all; nothing to estimate from.
    assert modified_kneser_ney_discounts([0, 0, 0, 0]) == (FALLBACK_DISCOUNT,) * 3
    # n2 >> n1 drives the estimates below zero: floored so mass still reaches unseen symbols.
    assert min(modified_kneser_ney_discounts([1, 50, 50, 50])) == MIN_DISCOUNT


def test_a_tiny_bigram_model_matches_the_formula_by_hand():
    model = KneserNeyLM.fit(np.array([1, 2, 1, 2, 1, 3]), order=2, vocab_size=4)
    # Unigram level, continuation counts (distinct left neighbours, the stream start counting
    # as one): bigrams 12, 21, 13 -> a(1) = 1 (after 2) + 1 (stream start) = 2, a(2) = 1,
    # a(3) = 1, a(0) = 0. Count-of-counts n1=2, n2=1, n3=0: Y = 2/4, D1 = 1 - 2*(1/2)*1/2
    # = 1/2; D2, D3+ fall back to D1. S = 4, gamma = (1/2 * 3 grams) / 4 = 3/8, so the
    # uniform share is 3/8 * 1/4 = 3/32:
    # P1 = [3/32, (2 - 1/2)/4 + 3/32, (1 - 1/2)/4 + 3/32, same] = [3/32, 15/32, 7/32, 7/32].
    unigram = np.array([3, 15, 7, 7]) / 32
    # Bigram level, raw counts 12:2, 21:2, 13:1 -> n1=1, n2=2, n3=0: Y = 1/5,
    # D1 = 1 - 2*(1/5)*2/1 = 1/5; D2, D3+ = 1/5.
    # Context 1: S = 3, gamma = (1/5 + 1/5)/3 = 2/15.
    #   P(2|1) = (2 - 1/5)/3 + 2/15 * 7/32 = 3/5 + 7/240 = 151/240
    #   P(3|1) = (1 - 1/5)/3 + 7/240 = 71/240; P(1|1) = 2/15 * 15/32 = 1/16 = 15/240;
    #   P(0|1) = 2/15 * 3/32 = 1/80 = 3/240.
    # Context 2: S = 2, gamma = (1/5)/2 = 1/10.
    #   P(1|2) = (2 - 1/5)/2 + 1/10 * 15/32 = 9/10 + 3/64 = 303/320; others P1 / 10.
    # Context 3 (only at the end of train) and 0 (unseen) pass everything down: P1.
    after_1 = np.array([3, 15, 151, 71]) / 240
    after_2 = np.array([3 / 320, 303 / 320, 7 / 320, 7 / 320])
    np.testing.assert_allclose(model.discounts, [(0.5, 0.5, 0.5), (0.2, 0.2, 0.2)])
    np.testing.assert_allclose(model.distribution([]), unigram, rtol=1e-12)
    np.testing.assert_allclose(model.distribution([2, 1]), after_1, rtol=1e-12)
    np.testing.assert_allclose(model.distribution([2]), after_2, rtol=1e-12)
    np.testing.assert_allclose(model.distribution([3]), unigram, rtol=1e-12)
    np.testing.assert_allclose(model.distribution([0]), unigram, rtol=1e-12)
    # Positions 1..5 of the train stream: 2|1, 1|2, 2|1, 1|2, 3|1 (position 0 is not scored).
    expected = np.log2([151 / 240, 303 / 320, 151 / 240, 303 / 320, 71 / 240])
    np.testing.assert_allclose(model.log2_probs(np.array([1, 2, 1, 2, 1, 3])), expected)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distributions_match_a_slow_reference_implementation(order: int):
    rng = np.random.default_rng(order)
    vocab_size = 6
    # A sticky random walk: repeats some n-grams often, others rarely or never.
    train = np.cumsum(rng.choice([0, 1, 1, 2], size=300)) % (vocab_size - 1) + 1
    model = KneserNeyLM.fit(train, order, vocab_size)
    contexts = [[], [0], [5, 0, 0], [int(t) for t in rng.integers(0, vocab_size, 5)]]
    contexts += [train[: s + 1].tolist() for s in rng.integers(0, len(train), 12)]
    for context in contexts:
        np.testing.assert_allclose(
            model.distribution(context),
            _reference_distribution(train.tolist(), order, vocab_size, context),
            rtol=1e-12,
            err_msg=f"context {context[-order:]}",
        )


def test_distributions_sum_to_one_and_give_every_symbol_some_probability(text_streams):
    train, held_out, vocab_size = text_streams
    model = KneserNeyLM.fit(train, 5, vocab_size)
    contexts = [[], train[:1], train[:3], train[:100], held_out[:50], [0, 0, 0, 0], [0]]
    contexts += [np.random.default_rng(0).integers(0, vocab_size, 7)]
    for context in contexts:
        probs = model.distribution(context)
        assert probs.dtype == np.float64 and probs.shape == (vocab_size,)
        assert abs(probs.sum() - 1.0) < 1e-9
        assert (probs > 0).all()


def test_log2_probs_score_positions_1_to_n_minus_1_as_distribution_does(text_streams):
    train, held_out, vocab_size = text_streams
    model = KneserNeyLM.fit(train, 4, vocab_size)
    scores = model.log2_probs(held_out)
    assert scores.dtype == np.float64 and scores.shape == (len(held_out) - 1,)
    for t in [1, 2, 3, 4, 57, len(held_out) - 1]:
        expected = np.log2(model.distribution(held_out[:t])[held_out[t]])
        assert scores[t - 1] == pytest.approx(expected, rel=1e-12)
    # history is context only: the first tokens are then predicted from it.
    with_history = model.log2_probs(held_out[10:20], history=held_out[:10])
    np.testing.assert_allclose(with_history, scores[10:19], rtol=1e-12)
    assert model.bits_per_char(held_out) == pytest.approx(-scores.mean())
    assert model.log2_probs(held_out[:1]).shape == (0,)


def test_higher_orders_beat_the_unigram_on_held_out_text(text_streams):
    train, held_out, vocab_size = text_streams
    bpc = {
        order: KneserNeyLM.fit(train, order, vocab_size).bits_per_char(held_out)
        for order in (1, 2, 3, 5)
    }
    assert bpc[5] < bpc[3] < bpc[2] < bpc[1]
    assert bpc[1] < np.log2(vocab_size)  # even the unigram beats uniform
    assert bpc[5] < 0.6 * bpc[1]


def test_choose_order_scores_every_order_and_keeps_the_best(text_streams):
    train, held_out, vocab_size = text_streams
    best, scores = choose_order(train, held_out, vocab_size, max_order=6)
    assert list(scores) == [1, 2, 3, 4, 5, 6]
    assert best.order == min(scores, key=scores.get) and best.order >= 3
    assert best.bits_per_char(held_out) == scores[best.order]
    # The shared counting gives the same model as fitting that order alone.
    alone = KneserNeyLM.fit(train, best.order, vocab_size)
    np.testing.assert_array_equal(best.log2_probs(held_out), alone.log2_probs(held_out))


def test_a_model_survives_a_json_round_trip_exactly(text_streams):
    train, held_out, vocab_size = text_streams
    model = KneserNeyLM.fit(train, 4, vocab_size)
    loaded = KneserNeyLM.from_dict(json.loads(json.dumps(model.to_dict())))
    assert (loaded.order, loaded.vocab_size) == (4, vocab_size)
    np.testing.assert_array_equal(loaded.log2_probs(held_out), model.log2_probs(held_out))
    np.testing.assert_array_equal(loaded.distribution([]), model.distribution([]))
    with pytest.raises(ValueError, match="to_dict"):
        KneserNeyLM.from_dict({"order": 4})


def test_streams_shorter_than_the_order_still_give_distributions():
    model = KneserNeyLM.fit(np.array([1, 2]), order=5, vocab_size=3)
    for context in ([], [1], [1, 2], [2, 2, 2, 2, 2]):
        assert abs(model.distribution(context).sum() - 1.0) < 1e-12
    assert np.isfinite(model.log2_probs(np.array([1, 2, 1, 2, 0]))).all()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: KneserNeyLM.fit(np.array([1, 2]), 0, 4), "order must be .* at least 1, got 0"),
        (lambda: KneserNeyLM.fit(np.array([1, 2]), 2, 0), "vocab_size must be"),
        (lambda: KneserNeyLM.fit(np.array([1, 4, 2]), 2, 4), r"train tokens\[1\] = 4 is outside"),
        (lambda: KneserNeyLM.fit(np.array([1, -1]), 2, 4), r"\[1\] = -1 is outside the vocab"),
        (lambda: KneserNeyLM.fit(np.array([0.5, 1.0]), 2, 4), "integer token ids"),
        (lambda: KneserNeyLM.fit(np.array([1, 2]), 2, 4).distribution([9]), "context"),
        (lambda: KneserNeyLM.fit(np.array([1, 2]), 2, 4).log2_probs(np.array([7, 1])), "tokens"),
        (lambda: KneserNeyLM.fit(np.array([1, 2]), 2, 4).bits_per_char(np.array([1])), "2 tok"),
        (lambda: choose_order(np.array([1, 2]), np.array([1, 2]), 4, 0), "order must be"),
        (lambda: choose_order(np.array([1, 2]), np.array([1, 5]), 4, 2), "validation tokens"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
