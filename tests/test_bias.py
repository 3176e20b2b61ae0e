"""Tests of utils.bias (notebook 05) and of its exercise checks: metrics against hand-computed
values, intervals, clustering, the explorer's logic, and generation on the tiny toy pipeline."""

import math

import numpy as np
import pytest

from utils import bias, toyworld
from utils.checks import bias as checks

# ---------------------------------------------------------------- metrics, hand-computed


@pytest.mark.parametrize("p, expected", [
    ([0.25, 0.25, 0.25, 0.25], 1.0),
    ([1, 0, 0, 0], 0.0),
    ([0.5, 0.5, 0, 0], 0.5),  # log 2 / log 4
    ([3, 1], (0.75 * math.log(4 / 3) + 0.25 * math.log(4)) / math.log(2)),  # counts
])
def test_normalized_entropy_matches_hand_computed_values(p, expected):
    value = bias.normalized_entropy(p)
    assert value == pytest.approx(expected, abs=1e-12)
    assert math.copysign(1, value) == 1  # never prints as -0.00


@pytest.mark.parametrize("p, q, expected", [
    ([0.5, 0.5], None, 0.0),
    ([1, 0], None, math.log(2)),
    ([1, 0, 0, 0], None, math.log(4)),
    ([0.8, 0.2], [0.5, 0.5], 0.8 * math.log(1.6) + 0.2 * math.log(0.4)),
    ([8, 2], [1, 1], 0.8 * math.log(1.6) + 0.2 * math.log(0.4)),  # counts are normalised
    ([0.5, 0.5], [0.8, 0.2], 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)),
    ([0.5, 0.5], [1, 0], math.inf),  # mass where the reference has none
    ([1, 0], [0.5, 0.5], math.log(2)),  # 0 log 0 = 0
])
def test_kl_divergence_matches_hand_computed_values(p, q, expected):
    assert bias.kl_divergence(p, q) == pytest.approx(expected, abs=1e-12)


def test_kl_divergence_is_not_symmetric():
    assert bias.kl_divergence([0.9, 0.1], [0.5, 0.5]) != pytest.approx(bias.kl_divergence([0.5, 0.5], [0.9, 0.1]))


@pytest.mark.parametrize("p, expected", [
    ([0.2] * 5, 0.0),
    ([1, 0, 0, 0], 0.375),  # (3/4 + 3 * 1/4) / 4
    ([0.8, 0.2], 0.3),
    ([1, 0, 0, 0, 0], 2 * 4 / 25),  # 2(K-1)/K^2
    ([0.8, 0.05, 0.05, 0.05, 0.05], (0.6 + 4 * 0.15) / 5),
])
def test_mad_matches_hand_computed_values(p, expected):
    assert bias.mad(p) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("metric", [bias.normalized_entropy, bias.kl_divergence, bias.mad])
@pytest.mark.parametrize("bad, message", [([], "non-empty"), ([0, 0, 0], "all entries are zero"),
                                          ([0.5, -0.1, 0.6], "negative"), ([[0.5, 0.5]], "1-D"),
                                          ([0.5, float("nan")], "finite")])
def test_metrics_refuse_what_is_not_a_distribution(metric, bad, message):
    with pytest.raises(ValueError, match=message):
        metric(bad)


def test_metrics_return_floats_and_check_their_own_conditions():
    assert all(type(f([1, 2, 3])) is float for f in (bias.normalized_entropy, bias.kl_divergence, bias.mad))
    with pytest.raises(ValueError, match="at least two"):
        bias.normalized_entropy([1])
    with pytest.raises(ValueError, match="same categories"):
        bias.kl_divergence([0.5, 0.5], [0.2, 0.3, 0.5])


# ---------------------------------------------------------------- counting and intervals


def test_counts_ignore_none_and_refuse_unknown_labels():
    assert bias.counts(["red", "blue", None, "red"], ["red", "blue", "green"]).tolist() == [2, 1, 0]
    assert bias.shares(["red", None, "blue", "blue"], ["red", "blue"]).tolist() == pytest.approx([1 / 3, 2 / 3])
    with pytest.raises(ValueError, match="not among the categories"):
        bias.counts(["red", "pink"], ["red", "blue"])


def test_bootstrap_interval_is_seeded_brackets_the_share_and_shrinks_with_n():
    labels = ["a"] * 30 + ["b"] * 10
    low, high = bias.bootstrap_interval(labels, ["a", "b"], seed=1)
    again = bias.bootstrap_interval(labels, ["a", "b"], seed=1)
    assert np.array_equal(low, again[0]) and np.array_equal(high, again[1])
    assert low[0] < 0.75 < high[0] and low[1] < 0.25 < high[1]
    low4, high4 = bias.bootstrap_interval(labels * 4, ["a", "b"], seed=1)
    assert (high4[0] - low4[0]) < 0.7 * (high[0] - low[0])  # about half the width


def test_bootstrap_interval_of_a_statistic_and_its_collapse():
    low, high = bias.bootstrap_interval(["a"] * 20 + ["b"] * 20, ["a", "b"], statistic=bias.mad, seed=0)
    assert isinstance(low, float) and 0 <= low < high
    low, high = bias.bootstrap_interval(["a"] * 20, ["a", "b"], seed=0)
    assert low.tolist() == high.tolist() == [1.0, 0.0]  # what the notebook warns about
    with pytest.raises(ValueError, match="no labels"):
        bias.bootstrap_interval([None, None], ["a", "b"])


def test_wilson_interval_matches_known_values():
    low, high = bias.wilson_interval(64, 64)
    assert high == 1.0 and low == pytest.approx(64 / (64 + 1.959964**2), abs=1e-6)  # closed form at k = n
    low, high = bias.wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert bias.wilson_interval(0, 10)[0] == 0.0
    with pytest.raises(ValueError):
        bias.wilson_interval(5, 4)


def test_amplification_and_verdict():
    factor, low, high = bias.amplification(64, 64, 0.8)
    assert factor == pytest.approx(1.25) and high == pytest.approx(1.25) and low > 1
    assert bias.verdict(low, high) == "amplified"
    factor, low, high = bias.amplification(40, 50, 0.8)
    assert factor == pytest.approx(1.0) and bias.verdict(low, high).startswith("reproduced")
    assert bias.verdict(*bias.amplification(10, 100, 0.8)[1:]) == "reduced"
    with pytest.raises(ValueError, match="training_share"):
        bias.amplification(1, 2, 0)


def test_reference_distribution_follows_toyworld_bias():
    doctor = bias.reference_distribution("doctor")
    assert doctor.sum() == pytest.approx(1)
    assert doctor[toyworld.COLORS.index("blue")] == pytest.approx(toyworld.BIAS["doctor"]["blue"])
    assert bias.reference_distribution(None).tolist() == pytest.approx([0.2] * 5)
    with pytest.raises(ValueError, match="role"):
        bias.reference_distribution("nurse")


def test_confusion_matrix():
    m = bias.confusion_matrix(["a", "a", "b", None], ["a", "b", "b", "a"], ["a", "b"])
    assert m.tolist() == [[1, 1], [0, 1]]


# ---------------------------------------------------------------- clustering


def test_kmeans_finds_separated_clusters_and_is_seeded():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    x = np.concatenate([c + rng.normal(size=(30, 2)) for c in centres])
    assignments, centroids = bias.kmeans(x, 3, seed=0)
    groups = assignments.reshape(3, 30)
    assert all(len(set(g)) == 1 for g in groups) and len({g[0] for g in groups}) == 3
    assert np.linalg.norm(centres[:, None] - centroids[None], axis=-1).min(axis=1).max() < 0.6
    assert np.array_equal(assignments, bias.kmeans(x, 3, seed=0)[0])
    with pytest.raises(ValueError, match="1 <= k"):
        bias.kmeans(x, 0)


# ---------------------------------------------------------------- the explorer


def test_compare_prompts_reports_shares_intervals_and_distance():
    stats = bias.compare_prompts(["a"] * 10, ["a"] * 5 + ["b"] * 5 + [None], ["a", "b"], n_boot=200)
    assert stats["shares_a"].tolist() == [1, 0] and stats["shares_b"].tolist() == [0.5, 0.5]
    assert stats["n_b"] == 10 and stats["total_variation"] == pytest.approx(0.5)
    assert stats["entropy_b"] == pytest.approx(1) and stats["mad_a"] == pytest.approx(0.5)
    assert np.all(stats["low_b"] <= stats["shares_b"]) and np.all(stats["shares_b"] <= stats["high_b"])


def test_explorer_figure_and_widget():
    pytest.importorskip("ipywidgets")
    import matplotlib
    matplotlib.use("Agg")
    image = np.zeros((32, 32, 3), np.uint8)
    galleries = {"p": ([image] * 3, ["a", "b", "a"]), "q": ([image] * 2, ["b", None])}
    fig = bias.explorer_figure(galleries, "p", "q", ["a", "b"], n_show=3)
    assert len(fig.axes) == 2 * 3 + 1  # two rows of images and the bar chart
    with pytest.raises(ValueError, match="no gallery"):
        bias.explorer_figure(galleries, "p", "r", ["a", "b"])
    box = bias.explorer(galleries, ["a", "b"])
    (pick_a, pick_b), picture = box.children[0].children, box.children[1]
    assert (pick_a.value, pick_b.value) == ("p", "q")
    before = bytes(picture.value)
    assert before.startswith(b"\x89PNG")
    pick_b.value = "p"  # the observer redraws the figure
    assert bytes(picture.value).startswith(b"\x89PNG") and bytes(picture.value) != before


# ---------------------------------------------------------------- measuring images


class _FakeOutput:
    def __init__(self, images, flags):
        self.images, self.nsfw_content_detected = images, flags


class _FakePipe:
    """Records its calls; returns one image per prompt whose value is the generator's first draw."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, generator, **kwargs):
        import torch
        self.calls.append((list(prompts), kwargs))
        images = [np.full((2, 2, 3), float(torch.rand(1, generator=g))) for g in generator]
        return _FakeOutput(images, [p == "blocked" for p in prompts])


def test_generate_batches_with_one_generator_per_seed():
    pipe = _FakePipe()
    images, blocked = bias.generate(pipe, "x", [5, 6, 7], batch_size=2, num_inference_steps=3)
    assert [len(c[0]) for c in pipe.calls] == [2, 1] and pipe.calls[0][1] == {"num_inference_steps": 3}
    alone, _ = bias.generate(_FakePipe(), "x", [7], batch_size=2)
    assert np.array_equal(images[2], alone[0])  # image 3 does not depend on its batch
    _, blocked = bias.generate(pipe, ["x", "blocked"], [0, 1])
    assert blocked == [False, True]
    with pytest.raises(ValueError, match="one seed per prompt"):
        bias.generate(pipe, ["x"], [0, 1])


@pytest.fixture(scope="module")
def toy_clip():
    from utils import models
    if not models.toy_model_built():
        pytest.skip("the toy model is not built")
    return models.load_clip("toy", device="cpu")


def test_zero_shot_labels_read_toy_colours(toy_clip):
    model, processor = toy_clip
    images = np.stack([np.asarray(toyworld.render(toyworld.Attributes(color=c, shape="square")))
                       for c in toyworld.COLORS])
    assert bias.zero_shot_labels(model, processor, images, toyworld.COLORS, "a {} shape") == toyworld.COLORS
    with pytest.raises(ValueError, match="template"):
        bias.zero_shot_labels(model, processor, images, toyworld.COLORS, "a shape")


# ---------------------------------------------------------------- exercise checks


def test_check_normalized_entropy(capsys):
    def right(p):
        p = np.asarray(p, float) / np.sum(p)
        nz = p[p > 0]
        return float(-(nz * np.log(nz)).sum() / np.log(len(p)))

    def unnormalised(p):  # entropy, not divided by log K
        p = np.asarray(p, float) / np.sum(p)
        nz = p[p > 0]
        return float(-(nz * np.log(nz)).sum())

    def zeros_break(p):
        p = np.asarray(p, float) / np.sum(p)
        return float(-(p * np.log(p)).sum() / np.log(len(p)))

    def counts_unnormalised(p):
        p = np.asarray(p, float)
        nz = p[p > 0]
        return float(-(nz * np.log(nz)).sum() / np.log(len(p)))

    assert checks.check_normalized_entropy(right)
    with np.errstate(all="ignore"):
        for wrong_answer, hint in [(unnormalised, "log K"), (zeros_break, "0 log 0"),
                                   (counts_unnormalised, "normalise")]:
            assert not checks.check_normalized_entropy(wrong_answer)
            assert hint in capsys.readouterr().out
    assert not checks.check_normalized_entropy(lambda p: ...)
    assert "Not yet solved" in capsys.readouterr().out


def test_check_n_needed(capsys):
    n = next(n for n in range(2, 10_000, 2) if np.subtract(*bias.wilson_interval(n // 2, n)[::-1]) <= 0.1)
    assert checks.check_n_needed(n)
    for wrong_answer in (n - 2, n + 40, n + 1, 0.5, "384"):
        assert not checks.check_n_needed(wrong_answer)
    assert str(n) not in capsys.readouterr().out.split("Correct!")[-1].split("Not quite")[1]
    assert not checks.check_n_needed(...)
    assert "Not yet solved" in capsys.readouterr().out


def test_check_amplification_factor(capsys):
    def right(labels, category, share):
        read = [x for x in labels if x is not None]
        return read.count(category) / len(read) / share

    def counts_none(labels, category, share):
        return labels.count(category) / len(labels) / share

    def no_division(labels, category, share):
        read = [x for x in labels if x is not None]
        return read.count(category) / len(read)

    def upside_down(labels, category, share):
        return 1 / right(labels, category, share)

    assert checks.check_amplification_factor(right)
    for wrong_answer, hint in [(counts_none, "None"), (no_division, "divide"), (upside_down, "upside down")]:
        assert not checks.check_amplification_factor(wrong_answer)
        assert hint in capsys.readouterr().out
    assert not checks.check_amplification_factor(lambda labels, category, share: ...)
    assert "Not yet solved" in capsys.readouterr().out


def test_check_per_class_recall(capsys):
    assert checks.check_per_class_recall(lambda m: np.diag(m) / np.asarray(m).sum(axis=1))
    for wrong_answer, hint in [(lambda m: np.diag(m) / np.asarray(m).sum(axis=0), "column"),
                               (lambda m: np.diag(m) / np.asarray(m).sum(), "all images"),
                               (lambda m: np.diag(m), "differs"),
                               (lambda m: float(np.trace(m) / np.sum(m)), "shape")]:
        assert not checks.check_per_class_recall(wrong_answer)
        assert hint in capsys.readouterr().out
    assert not checks.check_per_class_recall(lambda m: ...)
    assert "Not yet solved" in capsys.readouterr().out


def test_resampled_interval_resamples_units_paired():
    # every prompt alike: nothing to resample, the interval is the value
    assert bias.resampled_interval(np.mean, [0.25] * 9) == (pytest.approx(0.25), pytest.approx(0.25))
    # half the prompts always bad, half never: the mean of 40 draws has sd 0.079, so the 95%
    # interval is about 0.5 -+ 0.155, and it narrows as the prompts grow in number
    low, high = bias.resampled_interval(np.mean, [0.0, 1.0] * 20)
    assert low == pytest.approx(0.5 - 1.96 * 0.079, abs=0.03) and high == pytest.approx(0.5 + 1.96 * 0.079, abs=0.03)
    narrow = bias.resampled_interval(np.mean, [0.0, 1.0] * 200)
    assert narrow[1] - narrow[0] < (high - low) / 2.5
    assert bias.resampled_interval(np.mean, [0.0, 1.0] * 20, level=0.5)[1] < high
    # paired: each draw takes the same prompts from both sequences, so a method that halves
    # every prompt's share has a reduction of exactly 0.5 in every draw
    plain = [0.2, 0.4, 0.6, 0.8, 1.0]
    halved = [p / 2 for p in plain]
    reduction = bias.resampled_interval(lambda p, m: 1 - m.mean() / p.mean(), plain, halved)
    assert reduction == (pytest.approx(0.5), pytest.approx(0.5))
    assert bias.resampled_interval(np.mean, plain, seed=4) == bias.resampled_interval(np.mean, plain, seed=4)


def test_resampled_interval_refuses_bad_input():
    with pytest.raises(ValueError, match="at least one array"):
        bias.resampled_interval(np.mean)
    with pytest.raises(ValueError, match="one number of rows"):
        bias.resampled_interval(lambda a, b: a.mean() - b.mean(), [0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="at least one"):
        bias.resampled_interval(np.mean, [])
    with pytest.raises(ValueError, match="level=95"):
        bias.resampled_interval(np.mean, [0.1, 0.2], level=95)
    with pytest.raises(ValueError, match="n_boot=0"):
        bias.resampled_interval(np.mean, [0.1, 0.2], n_boot=0)
    with pytest.raises(ValueError, match="not finite"):  # a resample of only the first prompt
        bias.resampled_interval(lambda p, m: 1 - m.mean() / p.mean(), [0.0, 1.0], [0.0, 0.5])
