"""Checks for the exercises of `notebooks/03_safety_checker.ipynb` (the safety checker).

Each check judges what the learner wrote by what it does (a function is called on fresh random
tensors, a prediction is compared with the rule recomputed here, a threshold or an image is tried
on the data), prints its verdict without giving the answer away, and returns True or False.
"""

from __future__ import annotations

import math

import torch

from .. import safety, toyworld
from . import Verdict, is_placeholder, not_yet, right, wrong

# ---------------------------------------------------------------- exercise 1: a score by hand


def _as_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_concept_score(concept_score) -> Verdict:
    r"""
    Exercise 1: `concept_score(image_embed, concept_embed, threshold, adjustment=0.0)` must return
    the checker's score for one image and one concept, `round(cos - threshold + adjustment, 3)`.
    Tried on 20 random cases (unnormalised vectors, adjustments 0 and 0.01).
    """
    if is_placeholder(concept_score) or not callable(concept_score):
        return not_yet("write the body of concept_score: cosine similarity, minus the threshold, plus the "
                       "adjustment, rounded to 3 decimals.")
    gen = torch.Generator().manual_seed(2210)
    for case in range(20):
        image = torch.randn(16, generator=gen) * 4
        concept = torch.randn(16, generator=gen) * 0.3
        adjustment = 0.01 if case % 2 else 0.0
        cos = float(safety.cosine_similarity(image[None], concept[None]))
        threshold = round(cos - 0.0123456 * (case % 5 - 2) - adjustment + 0.0002, 6)  # margins far from an edge
        try:
            got = concept_score(image.clone(), concept.clone(), threshold, adjustment)
        except Exception as err:  # the learner's code: report what went wrong, do not crash the notebook
            return wrong(f"concept_score raised {type(err).__name__}: {err}")
        if is_placeholder(got):
            return not_yet("concept_score still returns the placeholder `...`.")
        got = _as_float(got)
        if got is None or math.isnan(got):
            return wrong("concept_score should return one number (a float or a 0-d tensor).")
        margin = cos - threshold
        expected = float(safety.round_scores(torch.tensor(margin + adjustment)))
        if abs(got - expected) < 1e-6:
            continue
        dot = float(image @ concept)
        if abs(got - (margin + adjustment)) < 1e-5:
            return wrong("the checker rounds its score to 3 decimals before comparing it with 0.")
        if abs(got - round(dot - threshold + adjustment, 3)) < 1e-5:
            return wrong("normalise both embeddings first: the checker compares directions (cosine similarity), "
                         "not raw dot products.")
        if abs(got - round(margin, 3)) < 1e-5:
            return wrong("the adjustment is added to the score (it is 0.01 after a special-care hit).")
        if abs(got - round(1 - cos - threshold + adjustment, 3)) < 1e-5:
            return wrong("despite its name, diffusers' `cosine_distance` is a similarity: use the cosine itself.")
        return wrong(f"for one random case your score is {got:.4f}, which is not the checker's. Compare your "
                     "steps with the rule in section 3.")
    return right("your function scores like diffusers' `forward`.")


# ---------------------------------------------------------------- exercise 2: predict decisions

PREDICTION_CASES = [
    # concept cosine, concept threshold, special-care cosine, special-care threshold
    dict(concept_cos=0.4123, concept_threshold=0.4119, special_cos=0.2012, special_threshold=0.3736),
    dict(concept_cos=0.3801, concept_threshold=0.3873, special_cos=0.3782, special_threshold=0.3736),
    dict(concept_cos=0.3879, concept_threshold=0.3873, special_cos=0.1020, special_threshold=0.3736),
    dict(concept_cos=0.3650, concept_threshold=0.3873, special_cos=0.4410, special_threshold=0.3736),
]
"""Four images, one concept and one special-care concept each: will the checker flag them?"""


def prediction_cases_table() -> str:
    """The cases of exercise 2 as a table to read (the cosines are those the checker computed)."""
    lines = ["case  concept cos  threshold  special-care cos  threshold"]
    for k, c in enumerate(PREDICTION_CASES):
        lines.append(f"{k:4}  {c['concept_cos']:11.4f}  {c['concept_threshold']:9.4f}  "
                     f"{c['special_cos']:16.4f}  {c['special_threshold']:9.4f}")
    return "\n".join(lines)


def _case_decisions():
    cases = PREDICTION_CASES
    flat = lambda key: torch.tensor([c[key] for c in cases], dtype=torch.float32)  # noqa: E731
    flagged = []
    for k in range(len(cases)):  # each case has its own thresholds
        _, scores, _ = safety.concept_scores(flat("concept_cos")[k:k + 1, None], flat("special_cos")[k:k + 1, None],
                                             flat("concept_threshold")[k:k + 1], flat("special_threshold")[k:k + 1])
        flagged.append(bool((scores > 0).any()))
    return flagged


def check_predictions(predictions) -> Verdict:
    r"""
    Exercise 2: `predictions` is a list of 4 booleans, True where the checker flags the image of
    `PREDICTION_CASES`. The expected verdicts are recomputed with the checker's rule.
    """
    if is_placeholder(predictions):
        return not_yet("set predictions to a list of four True/False values, one per case.")
    if not isinstance(predictions, (list, tuple)) or len(predictions) != len(PREDICTION_CASES) or not all(
            isinstance(p, bool) for p in predictions):
        return wrong(f"predictions should be a list of {len(PREDICTION_CASES)} booleans (True = flagged), "
                     f"got {predictions!r}.")
    expected = _case_decisions()
    n_right = sum(p == e for p, e in zip(predictions, expected))
    if n_right == len(expected):
        return right("you can now read the checker's decision off its numbers.")
    return wrong(f"{n_right} of {len(expected)} right. For each case: does a special-care score round to more "
                 "than 0 (then add 0.01)? Then round the concept score to 3 decimals: is it above 0?")


# ---------------------------------------------------------------- exercise 3: a dilution that bypasses


def _shows_restricted(image) -> bool:
    return bool(toyworld.decode(image)["restricted"])


def check_dilution(answer, checker, feature_extractor) -> Verdict:
    r"""
    Exercise 3: `answer` is a `toyworld.Attributes` whose image shows at least one restricted glyph
    (according to the decoder) and which the toy checker does not flag.
    """
    if is_placeholder(answer):
        return not_yet("set answer to a toyworld.Attributes(...) with at least one restricted glyph.")
    if not isinstance(answer, toyworld.Attributes):
        return wrong(f"answer should be a toyworld.Attributes, got {type(answer).__name__}.")
    if not answer.restricted:
        return wrong("your image has no restricted glyph: the task is to sneak one past the checker.")
    image = toyworld.render(answer)
    if not _shows_restricted(image):
        return wrong("the decoder sees no glyph in your image: it must still show restricted content.")
    scores = safety.run_checker(checker, feature_extractor, [image])
    if bool(scores.has_nsfw_concepts[0]):
        return wrong("the checker still flags this image. Add more (or other) content and try again.")
    return right(f"{toyworld.decode(image)['restricted']} shown, and the checker lets it through.")


# ---------------------------------------------------------------- exercise 4: a false-positive budget


def _flagged(cosines, threshold) -> int:
    scores = safety.round_scores(cosines - torch.tensor(threshold, dtype=torch.float32))
    return int((scores > 0).sum())


def check_threshold(threshold, benign_cos, budget) -> Verdict:
    r"""
    Exercise 4: `threshold` must flag at most `budget` (a share) of the benign images whose cosines
    with the concept are `benign_cos` (flagged when `round(cos - threshold, 3) > 0`), and be the
    lowest such threshold to within 0.001, so that it catches as much as the budget allows.
    """
    if is_placeholder(threshold):
        return not_yet("set threshold to a number: the lowest threshold whose false-positive rate "
                       "on the benign images is within the budget.")
    value = _as_float(threshold)
    if value is None or math.isnan(value):
        return wrong(f"threshold should be a number, got {threshold!r}.")
    benign_cos = torch.as_tensor(benign_cos).float().flatten()
    allowed = math.floor(budget * len(benign_cos) + 1e-9)  # images the budget allows to be flagged
    flagged = _flagged(benign_cos, value)
    if flagged > allowed:
        return wrong(f"at this threshold {flagged / len(benign_cos):.1%} of benign images are flagged, "
                     f"over the budget of {budget:.1%}.")
    if _flagged(benign_cos, value - 0.001) <= allowed:
        return wrong("within budget, but a lower threshold would be too: it would catch more restricted "
                     "images for the same false-positive budget.")
    return right(f"{flagged / len(benign_cos):.1%} of benign images flagged, within the {budget:.1%} budget, "
                 "and no lower threshold stays within it.")
