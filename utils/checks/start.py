"""Checks for the exercises of `notebooks/00_start_here.ipynb`."""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from .. import gpu, models
from ..i18n import tr
from . import Verdict, is_placeholder, not_yet, right, wrong


@contextmanager
def _course_profile(value: str):
    saved = os.environ.get(models.PROFILE_ENV_VAR)
    os.environ[models.PROFILE_ENV_VAR] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(models.PROFILE_ENV_VAR, None)
        else:
            os.environ[models.PROFILE_ENV_VAR] = saved


def check_forced_profile(answer) -> Verdict:
    """Exercise 1: in Colab on a T4 with the Hub reachable, after `%env COURSE_PROFILE=toy`,
    which profile do the loaders use?"""
    if is_placeholder(answer):
        return not_yet(tr('set answer to "toy" or "sd15".'))
    if answer not in ("toy", "sd15"):
        return wrong(tr('answer should be "toy" or "sd15"; it is {answer!r}.', answer=answer))
    with _course_profile("toy"):  # the rule decides; no GPU or Hub is asked when a name is given
        expected, _ = models.resolve_profile()
    if answer == expected:
        return right(tr("a profile you name wins over what auto would pick."))
    return wrong(tr("auto would pick sd15 there, but is auto asked at all? Read the order in "
                    "'Choosing a profile'."))


def check_switches(switches) -> Verdict:
    """Exercise 2: which memory switches does `plan_memory` choose for a 5 GiB GPU running sd15?"""
    if is_placeholder(switches):
        return not_yet(tr("set switches to a list of switch names, e.g. [] or "
                          '["vae_slicing"].'))
    if not isinstance(switches, (list, tuple)) or not all(isinstance(s, str) for s in switches):
        return wrong(tr("switches should be a list of strings; it is {switches!r}.", switches=switches))
    expected = gpu.plan_memory(5.0, "sd15").switches()
    unknown = [s for s in switches if s not in gpu.plan_memory(0.5, "sd15").switches() + expected]
    if unknown:
        return wrong(tr("{unknown} are not switch names that plan_memory uses; print a plan's "
                        "switches() to see the names.", unknown=unknown))
    if sorted(switches) == sorted(expected):
        return right(tr("a 5 GiB GPU fits the weights, not the peak of a 512x512 image without help."))
    extra, missing = set(switches) - set(expected), set(expected) - set(switches)
    return wrong(tr("{extra} switch(es) too many and {missing} missing. Which sizes in "
                    "section 4's table surround 5 GiB?", extra=len(extra), missing=len(missing)))


def check_same_noise(same_noise) -> Verdict:
    """Exercise 3: `same_noise(seed)` returns a (2, 4) tensor, the same for the same seed and
    different for different seeds, whatever else ran in between."""
    if is_placeholder(same_noise) or (callable(same_noise) and is_placeholder(same_noise(0))):
        return not_yet(tr("write the body of same_noise so that it returns a (2, 4) tensor."))
    if not callable(same_noise):
        return wrong(tr("same_noise should be a function of one argument, the seed."))
    first = same_noise(7)
    if not isinstance(first, torch.Tensor) or tuple(first.shape) != (2, 4):
        return wrong(tr("same_noise(7) should return a tensor of shape (2, 4); got {first!r:.60}.", first=first))
    torch.randn(100)  # other code draws random numbers in between
    if not torch.equal(first, same_noise(7)):
        return wrong(tr("two calls with seed 7 gave different tensors: the noise must come from a generator seeded "
                        "inside the function, not from the global random state."))
    if torch.equal(first, same_noise(8)):
        return wrong(tr("seeds 7 and 8 gave the same tensor: the seed must reach the generator."))
    return right(tr("a seeded generator makes the noise, and so the image, repeatable."))
