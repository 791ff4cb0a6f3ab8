"""Interpolated modified Kneser-Ney character n-gram language model (the text baseline).

Chen & Goodman (1998), "An empirical study of smoothing techniques for language modeling",
section 3.5: for an n-gram order n, and every order k = 1..n with context h of k-1 tokens,

    P_k(w | h) = max(a(h w) - D_k(a(h w)), 0) / S(h) + gamma(h) * P_{k-1}(w | h minus its first)
    gamma(h) = (D_k1 N1(h) + D_k2 N2(h) + D_k3+ N3+(h)) / S(h),  S(h) = sum_w a(h w)

where a is the raw count at order n and the continuation count (distinct tokens seen just
before the k-gram) below it, N_j(h) counts the w with a(h w) = j, and P_0 is uniform over the
V symbols, so every symbol keeps a probability above 0. A context never followed by a token in
train passes all its mass down. The start of the train stream counts as one more distinct left
neighbour, so every k-gram seen in train has a continuation count of at least 1.

Representation: every k-gram seen in train has a dense id (its rank among the train k-grams),
and a k-gram is coded as id(its first k-1 tokens) * V + its last token; codes stay below
(train length) * V for any order, so they fit int64 exactly. Counting is np.unique over the
whole stream per order, lookup is np.searchsorted, so fit and scoring are vectorised per order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trainyard.errors import ConfigError, DataError

FORMAT = "trainyard.kneser_ney/1"  # to_dict's format tag, checked by from_dict
FALLBACK_DISCOUNT = 0.5  # D1 when count-of-counts cannot estimate it (the usual absolute one)
# Estimates can fall below 0 on odd count-of-counts; a floor keeps every seen context's
# back-off weight above 0 (so unseen symbols keep some mass) without dominating it.
MIN_DISCOUNT = 0.1


def modified_kneser_ney_discounts(count_of_counts: Sequence[int]) -> tuple[float, float, float]:
    """Returns the discounts D1, D2, D3+ from the numbers n1..n4 of n-grams seen 1..4 times.

    Chen & Goodman's estimates: Y = n1 / (n1 + 2 n2), D_j = j - (j + 1) Y n_{j+1} / n_j. An
    estimate that needs a zero count-of-counts (tiny or odd data) takes the previous discount
    instead (D1 takes FALLBACK_DISCOUNT); each D_j is then kept within [MIN_DISCOUNT, j].
    """
    n1, n2, n3, n4 = (int(n) for n in count_of_counts)
    y = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else None
    discounts, previous = [], FALLBACK_DISCOUNT
    for j, (n_j, n_next) in enumerate(((n1, n2), (n2, n3), (n3, n4)), start=1):
        if y is not None and n_j > 0 and n_next > 0:
            previous = j - (j + 1) * y * n_next / n_j
        previous = min(max(previous, MIN_DISCOUNT), float(j))
        discounts.append(previous)
    return discounts[0], discounts[1], discounts[2]


def _check_tokens(tokens: Any, vocab_size: int, name: str) -> np.ndarray:
    """Returns tokens as a 1-D int64 array, raising DataError if any is not an id 0..V-1."""
    array = np.asarray(tokens)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(
            f"{name}: expected a 1-D array of integer token ids, got {array.dtype} with shape "
            f"{array.shape}"
        )
    bad = np.flatnonzero((array < 0) | (array >= vocab_size))
    if len(bad):
        raise DataError(
            f"{name}[{bad[0]}] = {array[bad[0]]} is outside the vocabulary 0..{vocab_size - 1} "
            f"({len(bad)} such tokens); encode every stream with the same vocabulary of "
            f"{vocab_size} symbols"
        )
    return array.astype(np.int64)


def _check_order(order: Any, vocab_size: Any) -> None:
    """Raises ConfigError unless order and vocab_size are whole numbers of at least 1."""
    for name, value in (("order", order), ("vocab_size", vocab_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"n-gram {name} must be a whole number of at least 1, got {value!r}")


def _lookup(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Returns the index of each query in the sorted codes, or -1 where it is absent."""
    if not len(codes):
        return np.full(len(query), -1, dtype=np.int64)
    index = np.searchsorted(codes, query).clip(0, len(codes) - 1)
    return np.where(codes[index] == query, index, -1)


def count_grams(
    tokens: np.ndarray, max_order: int, vocab_size: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Returns, per order k = 1..max_order (list index k-1), the sorted codes of the train
    k-grams, their raw counts and their continuation counts (the last one is empty)."""
    codes = [np.arange(vocab_size, dtype=np.int64)]
    ids = [tokens]  # ids[k-1][s]: the id of the k-gram starting at position s
    for k in range(2, max_order + 1):
        starts = max(len(tokens) - k + 1, 0)
        unique, inverse = np.unique(
            ids[-1][:starts] * vocab_size + tokens[k - 1 :], return_inverse=True
        )
        codes.append(unique)
        ids.append(inverse.reshape(-1))
    raw = [np.bincount(ids[k], minlength=len(codes[k])) for k in range(max_order)]
    continuation = []
    for k in range(max_order - 1):
        # The (k+2)-gram starting at s extends the (k+1)-gram starting at s+1 to the left: one
        # distinct left neighbour per distinct longer gram, plus the stream start for position 0.
        suffix = np.zeros(len(codes[k + 1]), dtype=np.int64)
        suffix[ids[k + 1]] = ids[k][1 : len(ids[k + 1]) + 1]
        counts = np.bincount(suffix, minlength=len(codes[k]))
        if len(ids[k]):
            counts[ids[k][0]] += 1
        continuation.append(counts)
    continuation.append(np.zeros(0, dtype=np.int64))
    return codes, raw, continuation


class KneserNeyLM:
    """An interpolated modified Kneser-Ney n-gram model over token ids 0..vocab_size-1."""

    def __init__(
        self,
        order: int,
        vocab_size: int,
        codes: list[np.ndarray],
        counts: list[np.ndarray],
        discounts: list[tuple[float, float, float]],
    ) -> None:
        _check_order(order, vocab_size)
        self.order, self.vocab_size = int(order), int(vocab_size)
        self.codes = [np.asarray(c, dtype=np.int64) for c in codes]  # per order: sorted codes
        self.counts = [np.asarray(c, dtype=np.int64) for c in counts]  # per order: a(h w)
        self.discounts = [tuple(float(d) for d in ds) for ds in discounts]  # per order: D1..D3+
        # Per order, with a trailing sentinel so that index -1 (unseen) reads "no mass here"
        # from the first and "pass everything down" from the second.
        self._numerators: list[np.ndarray] = []  # max(a - D(a), 0) / S(h), per gram id
        self._backoffs: list[np.ndarray] = []  # gamma(h), per context id
        for k in range(self.order):
            counts_k, contexts = self.counts[k], self.codes[k] // self.vocab_size
            n_contexts = len(self.codes[k - 1]) if k else 1
            d1, d2, d3 = self.discounts[k]
            discount = np.select([counts_k == 1, counts_k == 2, counts_k >= 3], [d1, d2, d3], 0.0)
            total = np.bincount(contexts, weights=counts_k, minlength=n_contexts)
            removed = np.bincount(contexts, weights=discount, minlength=n_contexts)
            seen = total > 0
            safe_total = np.where(seen, total, 1.0)
            numerators = (counts_k - discount) / safe_total[contexts]
            backoffs = np.where(seen, removed / safe_total, 1.0)
            self._numerators.append(np.append(numerators, 0.0))
            self._backoffs.append(np.append(backoffs, 1.0))

    @classmethod
    def _from_counts(
        cls,
        order: int,
        vocab_size: int,
        codes: list[np.ndarray],
        raw: list[np.ndarray],
        continuation: list[np.ndarray],
    ) -> KneserNeyLM:
        """Returns the model of `order` from count_grams' tables (of that order or more)."""
        counts = [*continuation[: order - 1], raw[order - 1]]
        discounts = []
        for counts_k in counts:
            count_of_counts = np.bincount(counts_k.clip(0, 5), minlength=5)[1:5]
            discounts.append(modified_kneser_ney_discounts(count_of_counts))
        return cls(order, vocab_size, codes[:order], counts, discounts)

    @classmethod
    def fit(cls, tokens: np.ndarray, order: int, vocab_size: int) -> KneserNeyLM:
        """Returns the model of `order` fitted on a stream of token ids 0..vocab_size-1."""
        _check_order(order, vocab_size)
        tokens = _check_tokens(tokens, vocab_size, "train tokens")
        return cls._from_counts(order, vocab_size, *count_grams(tokens, order, vocab_size))

    def _gram_ids(self, stream: np.ndarray) -> list[np.ndarray]:
        """Returns, per k = 0..order, the train id of stream[s:s+k] for every start s (-1 if
        that k-gram never occurs in train; k = 0 is the empty gram, id 0)."""
        ids = [np.zeros(len(stream) + 1, dtype=np.int64), stream]
        for k in range(2, self.order + 1):
            starts = max(len(stream) - k + 1, 0)
            prefix = ids[-1][:starts]
            found = _lookup(self.codes[k - 1], prefix * self.vocab_size + stream[k - 1 :])
            ids.append(np.where(prefix >= 0, found, -1))
        return ids

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """Returns P(next token | context) over all V symbols (float64, sums to 1), from the
        last order-1 tokens of context (fewer at the start of a stream)."""
        context = _check_tokens(context, self.vocab_size, "context")
        context = context[len(context) - min(len(context), self.order - 1) :]
        ids, symbols = self._gram_ids(context), np.arange(self.vocab_size)
        probs = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for k in range(1, len(context) + 2):
            history = ids[k - 1][len(context) - k + 1]  # the last k-1 tokens
            if history < 0:
                break  # a longer context is unseen too: it passes all its mass down
            grams = _lookup(self.codes[k - 1], history * self.vocab_size + symbols)
            probs = self._numerators[k - 1][grams] + self._backoffs[k - 1][history] * probs
        return probs

    def log2_probs(self, tokens: np.ndarray, history: Sequence[int] = ()) -> np.ndarray:
        """Returns log2 P(tokens[t] | everything before it) for t = 1..N-1 (float64, N-1
        values); `history` are tokens that come before tokens[0] (as context only)."""
        tokens = _check_tokens(tokens, self.vocab_size, "tokens")
        history = _check_tokens(history, self.vocab_size, "history")
        if len(tokens) < 2:
            return np.zeros(0)
        stream = np.concatenate([history, tokens])
        first = len(history) + 1  # stream position of tokens[1]
        ids = self._gram_ids(stream)
        probs = np.full(len(stream) - first, 1.0 / self.vocab_size)
        # Bottom-up: order k mixes its estimate with order k-1's at every position p >= k-1,
        # whose context stream[p-k+1:p] and k-gram stream[p-k+1:p+1] both start at p-k+1.
        for k in range(1, self.order + 1):
            lowest = max(first, k - 1)
            starts = slice(lowest - k + 1, len(stream) - k + 1)
            mixed = probs[lowest - first :]
            numerators = self._numerators[k - 1][ids[k][starts]]
            mixed[:] = numerators + self._backoffs[k - 1][ids[k - 1][starts]] * mixed
        return np.log2(probs)

    def bits_per_char(self, tokens: np.ndarray) -> float:
        """Returns the mean bits per character over positions 1..N-1 of tokens."""
        if len(tokens) < 2:
            raise DataError(
                f"bits per character needs at least 2 tokens (the first is context only), "
                f"got {len(tokens)}"
            )
        return float(-np.mean(self.log2_probs(tokens)))

    def to_dict(self) -> dict[str, Any]:
        """Returns the fitted model as JSON-able data (ints, floats and lists only)."""
        return {
            "format": FORMAT,
            "order": self.order,
            "vocab_size": self.vocab_size,
            "codes": [codes.tolist() for codes in self.codes],
            "counts": [counts.tolist() for counts in self.counts],
            "discounts": [list(d) for d in self.discounts],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KneserNeyLM:
        """Returns the model to_dict described."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(f"n-gram model: not a {FORMAT!r} dictionary (from KneserNeyLM.to_dict)")
        try:
            order, codes, counts = data["order"], data["codes"], data["counts"]
            tables = (codes, counts, data["discounts"])
            complete = all(len(table) == order for table in tables) and all(
                len(c) == len(a) for c, a in zip(codes, counts, strict=True)
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"n-gram model: malformed dictionary ({error!r})") from None
        if not complete:
            raise DataError(
                f"n-gram model: codes, counts and discounts need one entry per order 1..{order}, "
                "with as many counts as codes"
            )
        return cls(order, data["vocab_size"], codes, counts, data["discounts"])


def choose_order(
    train: np.ndarray, validation: np.ndarray, vocab_size: int, max_order: int
) -> tuple[KneserNeyLM, dict[int, float]]:
    """Returns the model of order 1..max_order with the lowest validation bits per character
    (the lower order on a tie) and the validation bpc of every order."""
    _check_order(max_order, vocab_size)
    train = _check_tokens(train, vocab_size, "train tokens")
    validation = _check_tokens(validation, vocab_size, "validation tokens")
    # Orders below n share n's codes and continuation counts, so count once for all of them.
    tables = count_grams(train, max_order, vocab_size)
    best, scores = None, {}
    for order in range(1, max_order + 1):
        model = KneserNeyLM._from_counts(order, vocab_size, *tables)
        scores[order] = model.bits_per_char(validation)
        if best is None or scores[order] < scores[best.order]:
            best = model
    return best, scores
