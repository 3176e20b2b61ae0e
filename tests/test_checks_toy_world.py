"""The exercise checks of notebook 01: right answers pass, typical wrong ones and the untouched
placeholder do not; the checks judge by what the answer does, not by one seed's output."""

import numpy as np
import pytest

from utils import models, toyworld
from utils.checks import toy_world


@pytest.fixture(scope="module")
def pipe():
    return models.load_pipeline("toy")


def run(capsys, check, *args):
    ok = check(*args)
    return ok, capsys.readouterr().out


def test_share_of(capsys):
    def right(images, color):
        return sum(toyworld.decode(im)["color"] == color for im in images) / len(images)

    def count(images, color):
        return sum(toyworld.decode(im)["color"] == color for im in images)

    def always_red(images, color):
        return np.mean([toyworld.decode(im)["color"] == "red" for im in images])

    def placeholder(images, color):
        return ...

    assert run(capsys, toy_world.check_share_of, right)[0]
    ok, out = run(capsys, toy_world.check_share_of, count)
    assert not ok and "count" in out
    ok, out = run(capsys, toy_world.check_share_of, always_red)
    assert not ok and "should count" in out
    assert "Not yet solved" in run(capsys, toy_world.check_share_of, placeholder)[1]
    assert "Not yet solved" in run(capsys, toy_world.check_share_of, ...)[1]


def test_amplification(capsys, pipe):
    verdicts = {p: run(capsys, toy_world.check_amplification, p, pipe)[0] for p in ("more", "less", "same")}
    assert sum(map(bool, verdicts.values())) == 1, "exactly one prediction matches the measurement"
    ok, out = run(capsys, toy_world.check_amplification, "blue", pipe)
    assert not ok and "should be" in out
    assert "Not yet solved" in run(capsys, toy_world.check_amplification, ..., pipe)[1]


def test_implicit_prompt(capsys, pipe):
    ok, out = run(capsys, toy_world.check_implicit_prompt, "a red circle with a ring", pipe)
    assert not ok and "names ['ring']" in out
    ok, out = run(capsys, toy_world.check_implicit_prompt, "a red circle at a rave", pipe)
    assert not ok and "does not know" in out
    ok, out = run(capsys, toy_world.check_implicit_prompt, "a red circle", pipe)
    assert not ok and "fewer than half" in out
    assert "Not yet solved" in run(capsys, toy_world.check_implicit_prompt, ..., pipe)[1]
    assert run(capsys, toy_world.check_implicit_prompt, "a blue square at a party", pipe)[0]
