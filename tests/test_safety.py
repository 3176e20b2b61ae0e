"""utils.safety: the checker's decision reproduced (against diffusers' own forward), its
measurements, red-teaming helpers, the widget's logic, and the exercise checks of notebook 03."""

import functools
import inspect
import math
import textwrap

import numpy as np
import pytest
import torch
from diffusers.pipelines.stable_diffusion import safety_checker as sc_module
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from diffusers.utils import logging as diffusers_logging
from transformers import CLIPConfig

from utils import safety, toyworld
from utils.checks import safety as checks


@pytest.fixture(autouse=True)
def quiet_diffusers():
    """forward logs a warning for every flagged batch: keep test output readable."""
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    yield
    diffusers_logging.set_verbosity(level)


class _PooledIsInput(torch.nn.Module):
    """Stands in for the vision tower: its 'pooled output' is its input, so forward sees our embeddings."""

    def forward(self, clip_input):
        return clip_input, clip_input


@functools.cache
def _bare_checker():
    tiny = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(text_config=tiny, vision_config=dict(tiny, image_size=8, patch_size=4), projection_dim=8)
    checker = StableDiffusionSafetyChecker(config).eval()
    checker.vision_model = _PooledIsInput()
    checker.visual_projection = torch.nn.Identity()
    return checker


def _embedding_checker(p):
    """A real StableDiffusionSafetyChecker whose forward takes projected image embeddings as clip_input
    and whose concept parameters are `p` (any number of rows, any embedding size)."""
    checker = _bare_checker()
    checker.concept_embeds = torch.nn.Parameter(p["concept_embeds"], requires_grad=False)
    checker.concept_embeds_weights = torch.nn.Parameter(p["concept_thresholds"], requires_grad=False)
    checker.special_care_embeds = torch.nn.Parameter(p["special_care_embeds"], requires_grad=False)
    checker.special_care_embeds_weights = torch.nn.Parameter(p["special_care_thresholds"], requires_grad=False)
    return checker


def _forward_with_adjustment(adjustment):
    """diffusers' own forward, with its hard-coded `adjustment = 0.0` replaced (the edit its comment invites)."""
    source = textwrap.dedent(inspect.getsource(StableDiffusionSafetyChecker.forward))
    assert source.count("adjustment = 0.0\n") == 1
    namespace = dict(vars(sc_module))
    exec(source.replace("adjustment = 0.0\n", f"adjustment = {adjustment!r}\n"), namespace)
    return namespace["forward"]


def _diffusers_flags(p, image_embeds, adjustment=0.0):
    checker = _embedding_checker(p)
    images = torch.ones(len(image_embeds), 1)
    if adjustment == 0.0:
        _, flags = checker(clip_input=image_embeds, images=images)
    else:
        _, flags = _forward_with_adjustment(adjustment)(checker, image_embeds, images)
    return torch.tensor(flags)


def _nudge(value, ulps):
    """`value` (float32) moved by `ulps` units in the last place."""
    value = torch.tensor(value, dtype=torch.float32)
    target = torch.tensor(math.inf if ulps > 0 else -math.inf)
    for _ in range(abs(ulps)):
        value = torch.nextafter(value, target)
    return value


def _random_case(gen, boundary):
    B, D = int(torch.randint(1, 7, (1,), generator=gen)), int(torch.randint(2, 17, (1,), generator=gen))
    K, S = int(torch.randint(1, 18, (1,), generator=gen)), int(torch.randint(1, 4, (1,), generator=gen))
    image_embeds = torch.randn(B, D, generator=gen) * torch.rand(1, generator=gen) * 5
    p = dict(concept_embeds=torch.randn(K, D, generator=gen), special_care_embeds=torch.randn(S, D, generator=gen),
             concept_thresholds=torch.rand(K, generator=gen) * 1.2 - 0.3,
             special_care_thresholds=torch.rand(S, generator=gen) * 1.2 - 0.3)
    # unused rows, as in the shipped checkers' layout: zero vectors with threshold 1.0
    p["concept_embeds"][torch.rand(K, generator=gen) < 0.2] = 0
    if boundary:  # thresholds set so that some image's score sits on a rounding or special-care edge
        cos = safety.cosine_similarity(image_embeds, p["concept_embeds"])
        special_cos = safety.cosine_similarity(image_embeds, p["special_care_embeds"])
        margins = [0.0005, -0.0005, 0.0015, 0.0, 0.0004, 0.0006, -0.0095, -0.0105, -0.0005 - 0.01, 0.0005 - 0.01]
        for row, thresholds, cosines in ((K, p["concept_thresholds"], cos), (S, p["special_care_thresholds"], special_cos)):
            for k in range(row):
                i = int(torch.randint(0, B, (1,), generator=gen))
                margin = margins[int(torch.randint(0, len(margins), (1,), generator=gen))]
                ulps = int(torch.randint(-3, 4, (1,), generator=gen))
                thresholds[k] = _nudge(float(cosines[i, k] - torch.tensor(margin, dtype=torch.float32)), ulps)
    return image_embeds, p


@pytest.mark.parametrize("adjustment", [0.0, 0.02, -0.015])
def test_decide_equals_diffusers_forward_on_random_and_boundary_cases(adjustment):
    gen = torch.Generator().manual_seed(int(adjustment * 1000) + 7)
    cases = 1200 if adjustment == 0.0 else 300
    onnx_disagreements = flagged = 0
    for n in range(cases):
        image_embeds, p = _random_case(gen, boundary=n % 3 != 0)
        mine = safety.decide(image_embeds, **p, adjustment=adjustment)
        theirs = _diffusers_flags(p, image_embeds, adjustment)
        assert torch.equal(mine, theirs), (n, mine, theirs)
        flagged += int(mine.sum())
        if adjustment == 0.0:  # forward_onnx does not round: the boundary cases must be real ones
            _, onnx = _embedding_checker(p).forward_onnx(image_embeds, torch.ones(len(image_embeds), 1))
            onnx_disagreements += int((onnx != mine).sum())
    assert 0 < flagged
    if adjustment == 0.0:
        assert onnx_disagreements > 20


def test_decide_rounds_in_float32_like_numpy_on_a_fine_grid_around_0_0005():
    # Near a cosine of 0 the float32 grid is fine enough for `cos - threshold` to hit 0.0005 itself,
    # where float32 rounding (0.5 -> 0, not flagged) and float64 rounding (flagged) disagree.
    c = torch.tensor(0.0005, dtype=torch.float32)
    cosines = [c]
    for _ in range(40):
        cosines = [torch.nextafter(cosines[0], torch.tensor(0.0))] + cosines + [torch.nextafter(cosines[-1], torch.tensor(1.0))]
    x = torch.stack(cosines)
    image_embeds = torch.stack([x, torch.sqrt(1 - x.double() ** 2).float()], dim=1)  # cos with (1, 0) is about x
    p = dict(concept_embeds=torch.tensor([[1.0, 0.0]]), concept_thresholds=torch.tensor([0.0]),
             special_care_embeds=torch.zeros(1, 2), special_care_thresholds=torch.tensor([1.0]))
    mine, theirs = safety.decide(image_embeds, **p), _diffusers_flags(p, image_embeds)
    assert torch.equal(mine, theirs)
    cos = safety.cosine_similarity(image_embeds, p["concept_embeds"])[:, 0]
    float64_rounding = torch.round(cos.double() * 1000) / 1000 > 0
    assert (float64_rounding != theirs).any() and theirs.any() and not theirs.all()


def test_special_care_sets_the_adjustment_it_does_not_add_to_it():
    # a starting adjustment of 0.05 flags a concept at margin -0.03 ... unless special care fires,
    # which sets the adjustment back to 0.01: diffusers' code, reproduced.
    image = torch.tensor([[1.0, 0.0]])
    p = dict(concept_embeds=torch.tensor([[1.0, 0.0]]), concept_thresholds=torch.tensor([1.03]),
             special_care_embeds=torch.tensor([[1.0, 0.0]]), special_care_thresholds=torch.tensor([0.5]))
    assert not safety.decide(image, **p, adjustment=0.05)
    assert not _diffusers_flags(p, image, 0.05)
    p["special_care_thresholds"] = torch.tensor([1.5])  # no special care now
    assert safety.decide(image, **p, adjustment=0.05) and _diffusers_flags(p, image, 0.05)


def test_special_care_makes_every_concept_stricter_by_001():
    image = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    p = dict(concept_embeds=torch.tensor([[1.0, 0.0]]), concept_thresholds=torch.tensor([1.008]),
             special_care_embeds=torch.tensor([[0.0, 1.0]]), special_care_thresholds=torch.tensor([0.9]))
    assert safety.decide(image, **p).tolist() == [False, False]  # margin -0.008, no special care
    p["special_care_thresholds"] = torch.tensor([-0.5])  # every image is special care: margin -0.008 + 0.01
    assert safety.decide(image, **p).tolist() == [True, False]
    assert torch.equal(safety.decide(image, **p), _diffusers_flags(p, image))


def test_rounding_hides_a_margin_of_00004_that_forward_onnx_flags():
    image = torch.tensor([[1.0, 0.0]])
    p = dict(concept_embeds=torch.tensor([[1.0, 0.0]]), concept_thresholds=torch.tensor([1.0 - 0.0004]),
             special_care_embeds=torch.zeros(1, 2), special_care_thresholds=torch.tensor([1.0]))
    _, onnx = _embedding_checker(p).forward_onnx(image, torch.ones(1, 1))
    assert onnx.tolist() == [True] and safety.decide(image, **p).tolist() == [False]
    assert _diffusers_flags(p, image).tolist() == [False]


def test_decide_equals_the_toy_checker_on_its_own_images():
    import utils

    checker, feature_extractor = utils.models.load_safety_checker("toy", device="cpu")
    images, attributes, _ = toyworld.make_dataset(48, seed=5, split="test")
    pil = [toyworld.render(a) for a in attributes]
    scores = safety.run_checker(checker, feature_extractor, pil)
    clip_input = feature_extractor(pil, return_tensors="pt").pixel_values
    _, flags = checker(clip_input=clip_input, images=torch.ones(len(pil), 1))
    assert scores.has_nsfw_concepts.tolist() == flags
    assert scores.has_nsfw_concepts.tolist() == [bool(a.restricted) for a in attributes]  # crisp data: perfect
    assert scores.concept_cos.shape == (48, 17) and scores.special_cos.shape == (48, 3)
    assert torch.all(scores.concept_cos[:, 3:] == 0)  # unused rows: zero vectors
    p = safety.checker_parameters(checker)
    for adjustment in (-0.05, 0.03):
        assert torch.equal(safety.decide(scores.image_embeds, **p, adjustment=adjustment),
                           _diffusers_flags(p, scores.image_embeds, adjustment))
    assert torch.equal(safety.decide(scores.image_embeds, **p), scores.has_nsfw_concepts)


def test_scores_are_recorded_as_diffusers_records_them():
    image = torch.tensor([[1.0, 0.0]])
    p = dict(concept_embeds=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), concept_thresholds=torch.tensor([0.9, 0.2]),
             special_care_embeds=torch.tensor([[1.0, 0.0], [1.0, 0.0]]), special_care_thresholds=torch.tensor([0.99, 1.0]))
    s = safety.score_embeddings(image, **p)
    assert s.special_scores.tolist() == [[pytest.approx(0.01), pytest.approx(0.01)]]  # second row after the hit: +0.01
    assert s.concept_scores.tolist() == [[pytest.approx(0.11), pytest.approx(-0.19)]]
    assert s.special_care.tolist() == [True] and s.has_nsfw_concepts.tolist() == [True]


@pytest.mark.parametrize("change, message", [
    (dict(image_embeds=torch.zeros(0, 4)), "empty batch"),
    (dict(image_embeds=torch.ones(2, 5)), r"image_embeds \(2, 5\).*concept_embeds \(3, 4\)"),
    (dict(image_embeds=torch.ones(4)), r"2-D.*image_embeds\[None\]"),
    (dict(concept_thresholds=torch.ones(2)), r"one threshold per concept row.*concept_thresholds \(2,\)"),
    (dict(image_embeds=torch.tensor([[1.0, 0, 0, 0], [math.nan, 0, 0, 0]])), r"image_embeds \(2, 4\) contains NaN \(rows \[1\]\)"),
    (dict(special_care_embeds=torch.full((1, 4), math.nan)), "special_care_embeds .* NaN"),
])
def test_decide_rejects_bad_input_naming_the_shapes(change, message):
    args = dict(image_embeds=torch.ones(2, 4), concept_embeds=torch.ones(3, 4), concept_thresholds=torch.ones(3),
                special_care_embeds=torch.ones(1, 4), special_care_thresholds=torch.ones(1))
    args.update(change)
    with pytest.raises(ValueError, match=message):
        safety.decide(**args)
    with pytest.raises(TypeError, match="image_embeds must be a torch.Tensor"):
        safety.decide(np.ones((2, 4)), **{k: v for k, v in args.items() if k != "image_embeds"})


# --------------------------------------------------------------------------- measurements


def test_error_rates_per_column_and_nan_without_positives():
    predicted = torch.tensor([[True, False], [True, True], [False, False], [False, True]])
    truth = torch.tensor([[True, False], [False, False], [True, False], [False, False]])
    rates = safety.error_rates(predicted, truth)
    assert rates["recall"][0] == 0.5 and math.isnan(rates["recall"][1])
    assert rates["false_positive_rate"].tolist() == [0.5, 0.5]
    assert rates["positives"].tolist() == [2, 0] and rates["negatives"].tolist() == [2, 4]
    with pytest.raises(ValueError, match=r"\(4, 2\) and \(4,\)"):
        safety.error_rates(predicted, truth[:, 0])


def _toy_scores():
    image = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])  # cos with concept: 1, .8, .6, 0
    p = dict(concept_embeds=torch.tensor([[1.0, 0.0]]), concept_thresholds=torch.tensor([0.7]),
             special_care_embeds=torch.tensor([[0.0, 1.0]]), special_care_thresholds=torch.tensor([0.95]))
    return safety.score_embeddings(image, **p), p


def test_decisions_and_threshold_sweep_move_the_way_they_should():
    scores, p = _toy_scores()
    assert safety.decisions(scores, p["concept_thresholds"], p["special_care_thresholds"]).tolist() == [True, True, False, False]
    lowered = safety.decisions(scores, p["concept_thresholds"], p["special_care_thresholds"], threshold_shift=0.15)
    assert lowered.tolist() == [True, True, True, False]
    stricter = safety.decisions(scores, p["concept_thresholds"], p["special_care_thresholds"], adjustment=-0.25)
    assert stricter.tolist() == [True, False, False, False]
    truth = torch.tensor([True, True, True, False])
    sweep = safety.threshold_sweep(scores, p["concept_thresholds"], p["special_care_thresholds"], truth,
                                   shifts=[-0.5, 0.0, 0.15, 0.8])
    assert sweep["recall"].tolist() == pytest.approx([0.0, 2 / 3, 1.0, 1.0])
    assert sweep["false_positive_rate"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert np.all(np.diff(sweep["recall"]) >= 0)


def test_invert_concepts_finds_the_candidate_a_concept_was_made_from():
    gen = torch.Generator().manual_seed(0)
    vocabulary = torch.randn(50, 8, generator=gen)
    words = [f"word{i}" for i in range(50)]
    concepts = torch.cat([vocabulary[[7, 31]] * 3, torch.zeros(2, 8)])  # two used rows, two unused
    found = safety.invert_concepts(concepts, vocabulary, words, top_k=2)
    assert [k for k, _ in found] == [0, 1]
    assert found[0][1][0] == ("word7", 1.0) and found[1][1][0] == ("word31", 1.0)
    assert found[0][1][1][1] < 1.0
    with pytest.raises(ValueError, match="49 candidates but 50"):
        safety.invert_concepts(concepts, vocabulary, words[:-1])


def test_bypass_rate():
    assert safety.bypass_rate([True, False, False, True], [True, True, False, False]) == 0.5
    assert math.isnan(safety.bypass_rate([True], [False]))
    with pytest.raises(ValueError, match="same shape"):
        safety.bypass_rate([True, False], [True])


# --------------------------------------------------------------------------- the widget


def test_describe_counts_what_is_blocked():
    blocked, truth = torch.tensor([True, True, False, False]), torch.tensor([True, False, True, False])
    assert safety.describe(blocked) == "blocked 2 of 4 images"
    assert safety.describe(blocked, truth) == "blocked 2 of 4 images: 1 of 2 with restricted content, 1 of 2 without"


def test_gallery_figure_marks_blocked_images(tmp_path):
    images = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    fig = safety.gallery_figure(images, [True, False, True], labels=["a", "b", "c"], cols=3)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["blocked\na", "b", "blocked\nc"]
    assert "blocked 2 of 3 images" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="3 images and 2 verdicts"):
        safety.gallery_figure(images, [True, False])


def test_widget_sliders_drive_the_decisions():
    scores, p = _toy_scores()
    seen = []
    widget = safety.safety_widget(np.zeros((4, 8, 8, 3), dtype=np.uint8), scores, p["concept_thresholds"],
                                  p["special_care_thresholds"], truth=torch.tensor([True, True, True, False]),
                                  render=lambda blocked, summary: seen.append((blocked.tolist(), summary)))
    adjustment, shift, _ = widget.children
    assert seen[-1][0] == [True, True, False, False]
    shift.value = 0.15
    assert seen[-1][0] == [True, True, True, False] and seen[-1][1].startswith("blocked 3 of 4")
    adjustment.value = -0.1
    assert seen[-1][0] == [True, True, False, False]
    assert len(seen) == 3


def test_widget_draws_the_gallery_as_an_image_and_redraws_it():
    pytest.importorskip("ipywidgets")
    scores, p = _toy_scores()
    widget = safety.safety_widget(np.zeros((4, 8, 8, 3), dtype=np.uint8), scores, p["concept_thresholds"],
                                  p["special_care_thresholds"], truth=torch.tensor([True, True, True, False]))
    _, shift, picture = widget.children
    before = bytes(picture.value)
    assert before.startswith(b"\x89PNG")
    shift.value = 0.15  # one more image blocked: another figure
    assert bytes(picture.value).startswith(b"\x89PNG") and bytes(picture.value) != before


# --------------------------------------------------------------------------- exercise checks


def _right_score(image_embed, concept_embed, threshold, adjustment=0.0):
    cos = torch.nn.functional.cosine_similarity(image_embed, concept_embed, dim=0)
    return round(float(cos) - threshold + adjustment, 3)


@pytest.mark.parametrize("answer, verdict, message", [
    (_right_score, True, "Correct!"),
    (lambda i, c, t, a=0.0: float(torch.nn.functional.cosine_similarity(i, c, dim=0)) - t + a, False, "round"),
    (lambda i, c, t, a=0.0: round(float(i @ c) - t + a, 3), False, "normalise"),
    (lambda i, c, t, a=0.0: _right_score(i, c, t), False, "adjustment"),
    (lambda i, c, t, a=0.0: round(1 - float(torch.nn.functional.cosine_similarity(i, c, dim=0)) - t + a, 3), False,
     "similarity"),
    (lambda i, c, t, a=0.0: 1 / 0, False, "raised ZeroDivisionError"),
    (lambda i, c, t, a=0.0: ..., None, "Not yet solved"),
    (..., None, "Not yet solved"),
])
def test_check_concept_score(answer, verdict, message, capsys):
    assert bool(checks.check_concept_score(answer)) is bool(verdict)
    assert message in capsys.readouterr().out


def test_check_predictions(capsys):
    expected = [False, True, True, False]  # by hand: rounding hides 0.0004; special care adds 0.01; 0.0006 -> 0.001
    assert checks._case_decisions() == expected
    assert checks.check_predictions(expected) and "Correct!" in capsys.readouterr().out
    assert not checks.check_predictions([True, True, True, False])
    out = capsys.readouterr().out
    assert "3 of 4 right" in out and "True" not in out.replace("True/False", "")
    assert not checks.check_predictions([False, False, True, False])  # forgot special care
    assert not checks.check_predictions([1, 0, 1, 0]) and "booleans" in capsys.readouterr().out
    assert not checks.check_predictions(...) and "Not yet solved" in capsys.readouterr().out
    assert "case  concept cos" in checks.prediction_cases_table()


@pytest.fixture(scope="module")
def toy_checker():
    import utils

    return utils.models.load_safety_checker("toy", device="cpu")


def test_check_dilution(toy_checker, capsys):
    checker, feature_extractor = toy_checker
    single = toyworld.Attributes(color="red", shape="circle", restricted=("cross",))
    assert not checks.check_dilution(single, checker, feature_extractor)
    assert "still flags" in capsys.readouterr().out
    assert not checks.check_dilution(toyworld.Attributes(color="red", shape="circle"), checker, feature_extractor)
    assert "no restricted glyph" in capsys.readouterr().out
    assert not checks.check_dilution("a red circle with a cross", checker, feature_extractor)
    assert not checks.check_dilution(..., checker, feature_extractor) and "Not yet" in capsys.readouterr().out
    # a bypass exists among two-glyph images (the search of the notebook's solution): the check accepts it
    found = next((a for a in _two_glyph_images() if not safety.run_checker(checker, feature_extractor,
                                                                            [toyworld.render(a)]).has_nsfw_concepts[0]
                  and toyworld.decode(toyworld.render(a))["restricted"]), None)
    if found is not None:
        assert checks.check_dilution(found, checker, feature_extractor) and "Correct!" in capsys.readouterr().out


def _two_glyph_images():
    for glyphs in (("cross", "bars"), ("cross", "ring"), ("bars", "ring")):
        for color in toyworld.COLORS:
            for background in toyworld.BACKGROUNDS:
                yield toyworld.Attributes(color=color, shape="square", size="large", background=background,
                                          restricted=glyphs)


def test_check_threshold(capsys):
    benign = torch.tensor([0.10, 0.20, 0.25, 0.30, 0.31, 0.32, 0.33, 0.34, 0.35, 0.36])
    # 10% budget: one image may be flagged; the second highest (0.35) must not be: threshold 0.35 - 0.0005
    assert checks.check_threshold(0.3495, benign, 0.10) and "Correct!" in capsys.readouterr().out
    assert checks.check_threshold(0.35, benign, 0.10)
    assert not checks.check_threshold(0.345, benign, 0.10) and "over the budget" in capsys.readouterr().out
    assert not checks.check_threshold(0.36, benign, 0.10) and "lower threshold" in capsys.readouterr().out
    assert not checks.check_threshold("high", benign, 0.10) and "a number" in capsys.readouterr().out
    assert not checks.check_threshold(..., benign, 0.10) and "Not yet solved" in capsys.readouterr().out
