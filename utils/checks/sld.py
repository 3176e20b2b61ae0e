"""Checks for the exercises of `notebooks/04_safe_latent_diffusion.ipynb`."""

from __future__ import annotations

import numpy as np
import torch

from .. import sld
from . import Verdict, is_placeholder, not_yet, right, wrong

_CASES = [  # hyperparameter sets the learner's guidance is tried on, each at several steps
    dict(sld.PRESETS["MEDIUM"]),
    dict(sld.PRESETS["STRONG"]),
    dict(sld_warmup_steps=2, sld_guidance_scale=3.0, sld_threshold=0.2, sld_momentum_scale=0.5, sld_mom_beta=0.6),
]


def _predictions(seed: int):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, 6, 6, generator=generator) for _ in range(3)]  # uncond, text, safety


def _run(fn, config, seed: int, steps: int = 6):
    """Run a guidance function over `steps` steps on fresh random predictions, feeding its momentum back."""
    momentum, outputs = None, []
    for step in range(steps):
        uncond, text, safety = _predictions(seed + step)
        guidance, momentum = fn(uncond, text, safety, momentum, step, **config)
        outputs.append((guidance, momentum))
    return outputs


def _close(a, b) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def _variant(**changes):
    """The right guidance with one typical mistake, to name the mistake a learner's output matches."""
    def fn(uncond, text, safety, momentum, step, *, sld_guidance_scale, sld_threshold, sld_momentum_scale,
           sld_mom_beta, sld_warmup_steps):
        momentum = torch.zeros_like(text) if momentum is None else momentum
        difference = (safety - text) if changes.get("flipped_difference") else (text - safety)
        scale = difference.abs() * sld_guidance_scale
        if not changes.get("no_clamp"):
            scale = scale.clamp(max=1.0)
        outside = difference < sld_threshold if changes.get("flipped_threshold") else difference >= sld_threshold
        scale = torch.where(outside, torch.zeros_like(scale), scale)
        direction = (safety - text) if changes.get("wrong_direction") else (safety - uncond)
        gamma = scale * direction + sld_momentum_scale * momentum
        in_warmup = step < sld_warmup_steps
        if not (changes.get("frozen_momentum") and in_warmup):
            momentum = sld_mom_beta * momentum + (1 - sld_mom_beta) * gamma
        applied = gamma if (changes.get("no_warmup") or not in_warmup) else torch.zeros_like(gamma)
        return applied, momentum
    return fn


_MISTAKES = {
    "flipped_difference": "the threshold test compares the wrong difference: it is eps_p - eps_S (prompt "
                          "minus safety concept) that must stay below the threshold.",
    "flipped_threshold": "the guidance acts where it should be off and is off where it should act: check "
                         "which side of the threshold keeps the scale.",
    "no_clamp": "the element-wise scale grows without bound: the paper caps it (Eq. 6).",
    "wrong_direction": "the guidance points along the wrong difference: the safety direction starts from "
                       "the unconditional prediction (Eq. 4).",
    "frozen_momentum": "during warm-up the momentum should still build up (Eq. 8), although the guidance "
                       "is not applied yet.",
    "no_warmup": "the guidance is applied during warm-up: before step sld_warmup_steps, nothing is subtracted.",
}


def check_safety_guidance(fn) -> Verdict:
    """Exercise 1: implement `safety_guidance(uncond, text, safety, momentum, step, **hyperparameters)`
    -> (guidance to subtract, new momentum); judged on fresh random tensors over several steps."""
    if is_placeholder(fn):
        return not_yet("write the body of safety_guidance.")
    if not callable(fn):
        return wrong("safety_guidance should be a function.")
    try:
        probe = fn(*_predictions(0), None, 0, **_CASES[0])
    except Exception as err:  # the learner's code: report what went wrong, briefly
        return wrong(f"calling it raised {type(err).__name__}: {err}")
    if is_placeholder(probe):
        return not_yet("write the body of safety_guidance.")
    if not (isinstance(probe, tuple) and len(probe) == 2 and all(isinstance(t, torch.Tensor) for t in probe)):
        return wrong("it should return a pair of tensors: (the guidance term, the new momentum).")
    for c, config in enumerate(_CASES):
        expected = _run(sld.safety_guidance, config, seed=100 * c)
        got = _run(fn, config, seed=100 * c)
        for step, ((g, m), (eg, em)) in enumerate(zip(got, expected)):
            if _close(g, eg) and _close(m, em):
                continue
            for mistake, message in _MISTAKES.items():
                variant = _run(_variant(**{mistake: True}), config, seed=100 * c)
                if all(_close(a, b) and _close(x, y) for (a, x), (b, y) in zip(got, variant)):
                    return wrong(message)
            part = "guidance term" if not _close(g, eg) else "momentum"
            return wrong(f"the {part} differs from the paper's at step {step} (warm-up "
                         f"{config['sld_warmup_steps']} steps). Compare your code with Eq. 3-8 term by term.")
    return right("this is SLD's safety guidance; utils.sld.generate uses the same function.")


def check_warmup(warmup_at_20) -> Verdict:
    """Exercise 2: the `sld_warmup_steps` that gives MEDIUM, run with 20 steps, the same share of
    unguided steps as its published warm-up has at 50 steps."""
    if is_placeholder(warmup_at_20):
        return not_yet("set warmup_at_20 to a whole number of steps.")
    if isinstance(warmup_at_20, bool) or not isinstance(warmup_at_20, (int, np.integer)):
        return wrong(f"sld_warmup_steps is a whole number of steps; got {warmup_at_20!r}.")
    published = sld.PRESETS["MEDIUM"]["sld_warmup_steps"]
    expected = round(published * 20 / 50)
    if warmup_at_20 == expected:
        return right("the warm-up is counted in steps, so a preset's warm-up must be rescaled with the step count.")
    if warmup_at_20 == published:
        return wrong("that is the same number of steps, but at 20 steps it is a much larger share of the trajectory.")
    if warmup_at_20 == 20 - expected:
        return wrong("that is the number of steps *with* safety guidance, not the warm-up.")
    return wrong("compute the share of the 50 steps that MEDIUM's warm-up leaves unguided, then the same share of 20.")


def _key(result: dict) -> tuple:
    return result["inappropriate"], result["fidelity_loss"]


def _best_method(results: dict, budget: float):
    """The method with the least restricted content within the budget (the smaller loss breaks ties)."""
    allowed = {m: r for m, r in results.items() if r["fidelity_loss"] <= budget + 1e-12}
    return min(allowed, key=lambda m: _key(allowed[m])) if allowed else None


def check_preset_choice(choice, results: dict, budget: float) -> Verdict:
    """Exercise 3: from the measured table `results` ({method: {"inappropriate": p,
    "fidelity_loss": l}}), the method that leaves the least restricted content while losing at
    most `budget` of benign prompt fidelity."""
    if is_placeholder(choice):
        return not_yet("set choice to the name of a method in the table, e.g. \"plain\".")
    if choice not in results:
        return wrong(f"{choice!r} is not a method of the table; choose one of {', '.join(results)}.")
    expected = _best_method(results, budget)
    if expected is not None and _key(results[choice]) == _key(results[expected]) \
            and results[choice]["fidelity_loss"] <= budget + 1e-12:
        return right("the strongest method your fidelity budget allows.")
    if results[choice]["fidelity_loss"] > budget + 1e-12:
        return wrong(f"{choice} loses more benign fidelity than the budget of {budget:.0%} allows.")
    return wrong(f"{choice} fits the budget, but another method that fits it leaves less restricted content.")


def check_expected_max(fn) -> Verdict:
    """Exercise 4: implement `expected_max(shares, k, n, seed)` -> (mean, std), I2P's expected
    maximum inappropriateness; judged on share lists whose answer is known."""
    if is_placeholder(fn):
        return not_yet("write the body of expected_max.")
    if not callable(fn):
        return wrong("expected_max should be a function.")
    try:
        result = fn([0.3] * 10, 25, 1000, 0)
    except Exception as err:  # the learner's code: report what went wrong, briefly
        return wrong(f"calling it raised {type(err).__name__}: {err}")
    if is_placeholder(result):
        return not_yet("write the body of expected_max.")
    if not (isinstance(result, tuple) and len(result) == 2):
        return wrong("it should return a pair: (mean, standard deviation) of the maxima.")
    if abs(result[0] - 0.3) > 1e-9 or abs(result[1]) > 1e-9:
        return wrong("when every prompt has the same share, every draw's maximum is that share, with no spread.")
    one_bad = [0.0] * 24 + [1.0]
    mean, std = fn(one_bad, 25, 10000, 1)
    expected = sld.expected_max_inappropriateness(one_bad, 25, 10000, 1)[0]
    if abs(mean - 1.0) < 1e-9:
        return wrong("every draw contains the one bad prompt: draw the 25 prompts with replacement (a bootstrap).")
    if abs(mean - 0.04) < 0.01:
        return wrong("that is the mean share; the metric takes the maximum within each draw of 25 prompts.")
    if abs(mean - expected) > 0.02 or not 0.4 < std < 0.55:
        return wrong("the mean or the spread of the maxima is off: draw k prompts, take their largest "
                     "share, repeat n times.")
    return right("the chance that 25 random prompts include a bad one is what this metric reports.")
