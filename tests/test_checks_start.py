"""The exercise checks of notebook 00: right answers pass, typical wrong ones and the
untouched placeholder do not, and the messages never give the answer away."""

import torch

from utils.checks import start


def verdict(capsys, check, value):
    ok = check(value)
    return ok, capsys.readouterr().out


def test_forced_profile(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "sd15")  # the check sets its own scenario
    assert verdict(capsys, start.check_forced_profile, "toy")[0]
    ok, out = verdict(capsys, start.check_forced_profile, "sd15")
    assert not ok and "Not quite" in out and '"toy"' not in out
    ok, out = verdict(capsys, start.check_forced_profile, ...)
    assert not ok and "Not yet solved" in out
    ok, out = verdict(capsys, start.check_forced_profile, "auto")
    assert not ok and "should be" in out
    import os
    assert os.environ["COURSE_PROFILE"] == "sd15", "the check restores the environment"


def test_switches(capsys):
    from utils import gpu

    right = gpu.plan_memory(5.0, "sd15").switches()
    assert verdict(capsys, start.check_switches, list(reversed(right)))[0]
    ok, out = verdict(capsys, start.check_switches, [])
    assert not ok and "missing" in out
    ok, out = verdict(capsys, start.check_switches, right + ["warp drive"])
    assert not ok and "not switch names" in out
    ok, out = verdict(capsys, start.check_switches, ...)
    assert not ok and "Not yet solved" in out
    assert not verdict(capsys, start.check_switches, "vae_slicing")[0]


def test_same_noise(capsys):
    def right(seed):
        return torch.randn(2, 4, generator=torch.Generator().manual_seed(seed))

    def global_state(seed):
        return torch.randn(2, 4)

    def ignores_seed(seed):
        return torch.randn(2, 4, generator=torch.Generator().manual_seed(0))

    def wrong_shape(seed):
        return torch.randn(4, generator=torch.Generator().manual_seed(seed))

    def placeholder(seed):
        return ...

    assert verdict(capsys, start.check_same_noise, right)[0]
    ok, out = verdict(capsys, start.check_same_noise, global_state)
    assert not ok and "generator seeded inside" in out
    ok, out = verdict(capsys, start.check_same_noise, ignores_seed)
    assert not ok and "seeds 7 and 8" in out
    ok, out = verdict(capsys, start.check_same_noise, wrong_shape)
    assert not ok and "shape (2, 4)" in out
    ok, out = verdict(capsys, start.check_same_noise, placeholder)
    assert not ok and "Not yet solved" in out


def test_a_verdict_is_true_only_when_right_and_a_notebook_shows_nothing_for_it(capsys):
    """The check prints its verdict; the value it returns must not add a stray `True` below it."""
    from IPython.core.formatters import DisplayFormatter

    from utils import checks

    verdicts = [checks.right("fine"), checks.wrong("not so"), checks.not_yet("try")]
    assert [bool(v) for v in verdicts] == [True, False, False]
    assert capsys.readouterr().out.splitlines() == ["Correct! fine", "Not quite: not so", "Not yet solved: try"]
    for verdict in verdicts:
        assert DisplayFormatter().format(verdict) == ({}, {})
