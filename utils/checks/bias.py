"""Checks for the exercises of `notebooks/05_bias_analysis.ipynb` (bias analysis).

Each check calls the learner's function on fresh inputs, or recomputes the asked-for number,
and compares with the right computation; none depends on the notebook's images.
"""

from __future__ import annotations

import numpy as np

from .. import bias
from . import Verdict, is_placeholder, not_yet, right, wrong


def _call(function, *args):
    """The learner's function's answer, or the exception it raised."""
    try:
        return function(*args), None
    except Exception as err:  # the learner's code may fail in any way: report it, do not crash
        return None, f"{type(err).__name__}: {err}"


def _as_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _is_unsolved(function, *args) -> bool:
    return not callable(function) or is_placeholder(_call(function, *args)[0])


def check_normalized_entropy(my_normalized_entropy) -> Verdict:
    """Exercise 1: H(p) / log K, for counts or probabilities, with 0 log 0 = 0."""
    if _is_unsolved(my_normalized_entropy, [1.0, 1.0]):
        return not_yet("make my_normalized_entropy(p) return H(p) / log K, computed with numpy.")
    rng = np.random.default_rng()
    cases = [[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0]]
    for _ in range(6):
        p = rng.random(rng.integers(2, 9))
        p[rng.random(p.size) < 0.3] = 0
        p[0] += 0.1
        cases.append(p / p.sum())
    cases.append(rng.integers(0, 50, size=6).astype(float) + np.array([1, 0, 0, 0, 0, 0]))  # counts
    for p in cases:
        got, error = _call(my_normalized_entropy, np.array(p))
        if error:
            return wrong(f"my_normalized_entropy({np.round(p, 3).tolist()}) raised {error}.")
        got = _as_float(got)
        expected = bias.normalized_entropy(p)
        if got is None or not np.isfinite(got):
            if np.any(np.asarray(p) == 0):
                return wrong("the answer is not a finite number when some p_k are 0: take 0 log 0 as 0.")
            return wrong("the answer should be a finite number.")
        if abs(got - expected) > 1e-6:
            if np.asarray(p).sum() > 1.5:
                return wrong("counts are not yet probabilities: normalise p so it sums to 1 first.")
            entropy = expected * np.log(len(p))
            if abs(got - entropy) < 1e-6:
                return wrong("that is the entropy H(p); divide it by its maximum, log K.")
            return wrong(f"for p = {np.round(p, 3).tolist()} the result is off by {abs(got - expected):.3g}.")
    return right("It matches utils.bias.normalized_entropy on every distribution tried.")


def _width(n: int) -> float:
    low, high = bias.wilson_interval(n // 2, n)
    return high - low


def check_n_needed(n_needed) -> Verdict:
    """Exercise 2: the smallest even n whose 95% Wilson interval at a 50% share is <= 0.10 wide."""
    if is_placeholder(n_needed):
        return not_yet("set n_needed to a whole number of images.")
    if isinstance(n_needed, bool) or not isinstance(n_needed, (int, np.integer)) or n_needed < 2:
        return wrong(f"n_needed should be a whole number of images (at least 2), got {n_needed!r}.")
    if n_needed % 2:
        return wrong("use an even n, so that a share of exactly 50% is n / 2 images.")
    if _width(n_needed) > 0.10:
        return wrong(f"with {n_needed} images the interval is {_width(n_needed):.3f} wide: more images are needed.")
    if _width(n_needed - 2) <= 0.10:
        return wrong(f"{n_needed} images are enough, but fewer would do: find the smallest n.")
    return right(f"With {n_needed} images a 50% share is known to within about ±5 points.")


def check_amplification_factor(amplification_factor) -> Verdict:
    """Exercise 3: share of `category` among the non-None labels, divided by the training share."""
    if _is_unsolved(amplification_factor, ["red", "blue"], "red", 0.5):
        return not_yet("make amplification_factor return (share of category among the labels) / training_share.")
    rng = np.random.default_rng()
    categories = ["red", "green", "blue"]
    for _ in range(5):
        n = int(rng.integers(10, 40))
        labels = [categories[i] for i in rng.integers(0, 3, size=n)]
        labels += [None] * int(rng.integers(1, 6))
        labels = [labels[i] for i in rng.permutation(len(labels))]
        read = [x for x in labels if x is not None]
        category = max(categories, key=read.count)
        training_share = float(rng.uniform(0.2, 0.9))
        expected = read.count(category) / len(read) / training_share
        got, error = _call(amplification_factor, list(labels), category, training_share)
        if error:
            return wrong(f"amplification_factor raised {error} (some labels are None: blocked images).")
        got = _as_float(got)
        if got is None:
            return wrong("amplification_factor should return a number.")
        if abs(got - expected) > 1e-9:
            share_all = labels.count(category) / len(labels) / training_share
            if abs(got - share_all) < 1e-9:
                return wrong("blocked images (None) were counted: leave them out of the share.")
            if abs(got - expected * training_share) < 1e-9:
                return wrong("that is the generated share; divide it by the training share.")
            if abs(got - 1 / expected) < 1e-9:
                return wrong("the ratio is upside down: generated share over training share.")
            return wrong("the factor differs from (share of the category among read labels) / training_share.")
    return right("A factor above 1 amplifies the data's bias; report it with its interval (bias.amplification).")


def check_per_class_recall(per_class_recall) -> Verdict:
    """Exercise 4: for each true class (row), the share of its images predicted right."""
    if _is_unsolved(per_class_recall, np.eye(2, dtype=int)):
        return not_yet("make per_class_recall(matrix) return, per row, the diagonal count over the row total.")
    rng = np.random.default_rng()
    for _ in range(5):
        k = int(rng.integers(2, 6))
        matrix = rng.integers(0, 20, size=(k, k))
        matrix[np.arange(k), np.arange(k)] += rng.integers(1, 30, size=k)
        matrix[0, 1 % k] += 25  # rows and columns differ in total
        expected = np.diag(matrix) / matrix.sum(axis=1)
        got, error = _call(per_class_recall, matrix.copy())
        if error:
            return wrong(f"per_class_recall raised {error}.")
        try:
            got = np.asarray(got, dtype=float)
        except (TypeError, ValueError):
            return wrong("per_class_recall should return a numpy array of numbers, one per class.")
        if got.shape != (k,):
            return wrong(f"for a {k}x{k} matrix, return {k} numbers, one per true class (got shape {got.shape}).")
        if not np.allclose(got, expected):
            if np.allclose(got, np.diag(matrix) / matrix.sum(axis=0)):
                return wrong("that divides by the column totals (predicted classes): rows are the true classes.")
            if np.allclose(got, np.diag(matrix) / matrix.sum()):
                return wrong("that divides by the number of all images: divide by each true class's own total.")
            return wrong("some classes' recall differs from (right predictions of the class) / (images of the class).")
    return right("Per-class recall shows the classes an accurate-looking instrument fails.")
