"""utils.inference (the hand-written sampling loop and the course's generation helper) and the
exercise checks of notebook 02, on the toy profile: tiny, seeded, CPU, a few steps."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, DPMSolverMultistepScheduler

from utils import inference, models
from utils.checks import inference as checks

PROMPTS = ["a red circle", "a blue square on a black background"]


@pytest.fixture(scope="module")
def pipe():
    return models.load_pipeline("toy")


@pytest.fixture
def with_scheduler(pipe):
    """Swap a scheduler in for one test, and put the original back."""
    original = pipe.scheduler

    def swap(scheduler_class):
        pipe.scheduler = scheduler_class.from_config(original.config)
        return pipe

    yield swap
    pipe.scheduler = original


def generator(seed=0):
    return torch.Generator("cpu").manual_seed(seed)


# ---------------------------------------------------------------- the hand loop equals pipe(...)


@pytest.mark.parametrize("scheduler_class", [DDIMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler,
                                             DPMSolverMultistepScheduler])
def test_hand_loop_equals_pipe_for_each_scheduler(with_scheduler, scheduler_class):
    pipe = with_scheduler(scheduler_class)
    expected = pipe(PROMPTS, num_inference_steps=4, generator=generator(1), output_type="np").images
    got = inference.sample(pipe, PROMPTS, num_inference_steps=4, generator=generator(1), output_type="np").images
    assert got.shape == expected.shape == (2, 32, 32, 3)
    assert np.abs(got - expected).max() <= 1e-5


def test_hand_loop_equals_pipe_with_negative_prompt_and_other_guidance(pipe):
    for kwargs in [dict(negative_prompt=["blue", "red"], guidance_scale=3.0), dict(guidance_scale=1.0)]:
        expected = pipe(PROMPTS, num_inference_steps=3, generator=generator(2), output_type="np", **kwargs).images
        got = inference.sample(pipe, PROMPTS, num_inference_steps=3, generator=generator(2), output_type="np", **kwargs).images
        assert np.abs(got - expected).max() <= 1e-5, kwargs


def test_hand_loop_differs_for_another_seed(pipe):
    a = inference.sample(pipe, PROMPTS[0], num_inference_steps=3, generator=generator(0), output_type="np").images
    b = inference.sample(pipe, PROMPTS[0], num_inference_steps=3, generator=generator(1), output_type="np").images
    assert np.abs(a - b).max() > 0.05


def test_hand_loop_runs_the_safety_checker_like_pipe(pipe):
    prompts = ["a red circle with a cross", "a red circle"]
    expected = pipe(prompts, num_inference_steps=10, generator=generator(0), output_type="np")
    got = inference.sample(pipe, prompts, num_inference_steps=10, generator=generator(0), output_type="np")
    assert got.nsfw_content_detected == expected.nsfw_content_detected
    assert got.nsfw_content_detected[0] and not got.nsfw_content_detected[1]
    assert got.images[0].max() == 0  # black
    assert np.abs(got.images - expected.images).max() <= 1e-5


def test_sample_returns_pil_images_by_default(pipe):
    images = inference.sample(pipe, PROMPTS[0], num_inference_steps=2, generator=generator()).images
    assert images[0].size == (32, 32)


# ---------------------------------------------------------------- the pieces


def test_encode_prompt_equals_the_pipelines(pipe):
    ours = inference.encode_prompt(pipe, PROMPTS, negative_prompt="green")
    theirs = pipe.encode_prompt(PROMPTS, pipe.device, 1, True, negative_prompt=["green", "green"])
    L, D = pipe.tokenizer.model_max_length, pipe.text_encoder.config.hidden_size
    for a, b in zip(ours, theirs):
        assert a.shape == (2, L, D)
        assert torch.equal(a, b)


def test_encode_prompt_rejects_mismatched_negative_prompts(pipe):
    with pytest.raises(ValueError, match="one per prompt"):
        inference.encode_prompt(pipe, PROMPTS, negative_prompt=["a", "b", "c"])


def test_prepare_latents_shape_and_scale(with_scheduler):
    pipe = with_scheduler(EulerDiscreteScheduler)
    pipe.scheduler.set_timesteps(10)
    latents = inference.prepare_latents(pipe, 3, height=48, width=64, generator=generator())
    assert latents.shape == (3, 4, 24, 32)
    unscaled = torch.randn(3, 4, 24, 32, generator=generator())
    assert pipe.scheduler.init_noise_sigma > 1
    assert torch.allclose(latents, unscaled * pipe.scheduler.init_noise_sigma)


def test_guidance_formula():
    uncond, text = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert torch.allclose(inference.guidance(uncond, text, 0.0), uncond, atol=1e-6)
    assert torch.allclose(inference.guidance(uncond, text, 1.0), text, atol=1e-6)
    assert torch.allclose(inference.guidance(uncond, text, 3.0), uncond + 3 * (text - uncond), atol=1e-6)


def test_decode_latents_gives_images_in_0_1(pipe):
    images = inference.decode_latents(pipe, torch.randn(2, 4, 16, 16, generator=generator()) * 3)
    assert images.shape == (2, 3, 32, 32)
    assert images.min() >= 0 and images.max() <= 1


def test_scheduler_step_kwargs():
    config = DDIMScheduler().config
    g = generator()
    assert inference.scheduler_step_kwargs(DDIMScheduler.from_config(config), g) == {"eta": 0.0, "generator": g}
    assert inference.scheduler_step_kwargs(EulerAncestralDiscreteScheduler.from_config(config), g) == {"generator": g}


def test_library_messages_collects_warnings_instead_of_printing(pipe, capsys):
    with inference.library_messages() as messages:
        pipe("a red circle " * 20, num_inference_steps=1)
    assert any("truncated" in m for m in messages)
    assert "truncated" not in capsys.readouterr().err


# ---------------------------------------------------------------- the validating helper


def test_generate_equals_pipe_with_a_cpu_generator(pipe):
    got = inference.generate(pipe, PROMPTS, num_inference_steps=3, seed=4, output_type="np").images
    expected = pipe(PROMPTS, num_inference_steps=3, generator=generator(4), output_type="np").images
    assert np.array_equal(got, expected)


def test_generate_accepts_one_negative_prompt_for_a_list(pipe):
    got = inference.generate(pipe, PROMPTS, negative_prompt="green", num_inference_steps=2, output_type="np").images
    assert got.shape == (2, 32, 32, 3)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(height=30), ValueError, ["height", "multiple of 8", "24 or 32", "native height is 32"]),
    (dict(width=0), ValueError, ["width", "multiple of 8", "got 0"]),
    (dict(height=33.0), ValueError, ["height", "multiple of 8", "32 or 40"]),
    (dict(prompt=[]), ValueError, ["empty list", "at least one prompt"]),
    (dict(prompt=["a red circle", 3]), TypeError, ["string"]),
    (dict(prompt=None), TypeError, ["string"]),
    (dict(num_inference_steps=0), ValueError, ["num_inference_steps", "at least 1", "got 0"]),
    (dict(num_inference_steps=-1), ValueError, ["num_inference_steps", "got -1"]),
    (dict(num_inference_steps=2.5), ValueError, ["num_inference_steps", "whole number"]),
    (dict(num_images_per_prompt=0), ValueError, ["num_images_per_prompt"]),
])
def test_generate_rejects_bad_input_with_clear_errors(pipe, kwargs, error, words):
    call = {"prompt": "a red circle", "num_inference_steps": 2, **kwargs}
    with pytest.raises(error) as info:
        inference.generate(pipe, **call)
    for word in words:
        assert word in str(info.value)


def test_generate_says_what_is_cut_from_a_long_prompt(pipe, capsys):
    long_prompt = "a red circle " + "on a grey background " * (pipe.tokenizer.model_max_length // 4 + 2)
    cut = inference.cut_text(pipe, long_prompt)
    kept = pipe.tokenizer.model_max_length - 2  # without the start and end tokens
    assert len(pipe.tokenizer.tokenize(cut)) == len(pipe.tokenizer.tokenize(long_prompt)) - kept
    inference.generate(pipe, long_prompt, num_inference_steps=1)
    captured = capsys.readouterr()
    assert f"reads {pipe.tokenizer.model_max_length} tokens" in captured.out and cut in captured.out
    assert "truncated" not in captured.err  # diffusers' own warning is not repeated
    assert inference.cut_text(pipe, "a red circle") == ""
    with pytest.raises(ValueError, match=f"longer than the {pipe.tokenizer.model_max_length} tokens"):
        inference.generate(pipe, long_prompt, num_inference_steps=1, allow_truncation=False)


def test_generate_names_unknown_words_on_the_toy_profile(pipe, capsys):
    inference.generate(pipe, "a red circle riding a horse", num_inference_steps=1)
    out = capsys.readouterr().out
    assert "'riding', 'horse'" in out
    inference.generate(pipe, "a red circle", num_inference_steps=1)
    assert capsys.readouterr().out == ""


def test_is_toy_pipeline(pipe):
    assert inference.is_toy_pipeline(pipe)
    assert not inference.is_toy_pipeline(object())


# ---------------------------------------------------------------- exercise checks


def test_check_guidance(capsys):
    assert checks.check_guidance(lambda u, t, s: u + s * (t - u))
    assert checks.check_guidance(lambda u, t, s: s * t + (1 - s) * u)  # the same, rearranged
    assert "Correct" in capsys.readouterr().out
    cases = [
        (lambda u, t, s: t + s * (u - t), "wrong order"),
        (lambda u, t, s: u + s * (u - t), "wrong way round"),
        (lambda u, t, s: t + s * (t - u), "starts from the wrong prediction"),
        (lambda u, t, s: u + (s - 1) * (t - u), "off by one"),
        (lambda u, t, s: s * (t - u), "lost the prediction"),
        (lambda u, t, s: t, "does not change"),
        (lambda u, t, s: s * u * t, "check yours at those two scales"),
        (lambda u, t, s: u[0], "shape"),
        (lambda u, t, s: 1 / 0, "ZeroDivisionError"),
    ]
    for wrong_fn, words in cases:
        assert not checks.check_guidance(wrong_fn)
        out = capsys.readouterr().out
        assert out.startswith("Not quite") and words in out, out
        assert "noise_pred_uncond + guidance_scale" not in out  # never the answer
    assert not checks.check_guidance(...)
    assert not checks.check_guidance(lambda u, t, s: ...)
    assert capsys.readouterr().out.count("Not yet solved") == 2


def test_check_guidance_one(capsys):
    assert checks.check_guidance_one("text")
    assert checks.check_guidance_one("noise_pred_text")
    assert not checks.check_guidance_one("unconditional")
    assert not checks.check_guidance_one("neither")
    assert not checks.check_guidance_one(1.0)
    assert not checks.check_guidance_one(...)
    out = capsys.readouterr().out
    assert out.count("Correct") == 2 and out.count("Not quite") == 3 and "Not yet solved" in out


def test_check_latent_shape(pipe, capsys):
    assert checks.check_latent_shape((4, 4, 24, 32), pipe)
    capsys.readouterr()
    cases = [((4, 4, 48, 64), "in pixels"), ((4, 4, 32, 24), "swapped"), ((8, 4, 24, 32), "doubling"),
             ((4, 3, 24, 32), "RGB"), ((4, 4, 6, 8), "vae_scale_factor"), ((4, 4, 24), "four dimensions"),
             ("shape", "tuple of four")]
    for answer, words in cases:
        assert not checks.check_latent_shape(answer, pipe)
        out = capsys.readouterr().out
        assert out.startswith("Not quite") and words in out, (answer, out)
    assert not checks.check_latent_shape(..., pipe)
    assert "Not yet solved" in capsys.readouterr().out


def test_check_same_generator(pipe, capsys):
    assert checks.check_same_generator(False, pipe)
    assert not checks.check_same_generator(True, pipe)
    assert not checks.check_same_generator("no", pipe)
    assert not checks.check_same_generator(..., pipe)
    out = capsys.readouterr().out
    assert out.count("Correct") == 1 and out.count("Not quite") == 2 and "Not yet solved" in out


def test_check_ancestral_step(pipe, capsys):
    original = pipe.scheduler
    assert checks.check_ancestral_step(lambda s, n, t, x, g: s.step(n, t, x, generator=g).prev_sample, pipe)
    assert "Correct" in capsys.readouterr().out
    assert pipe.scheduler is original  # put back
    cases = [
        (lambda s, n, t, x, g: s.step(n, t, x).prev_sample, "global random state"),
        (lambda s, n, t, x, g: s.step(n, t, x, generator=torch.Generator().manual_seed(9)).prev_sample, "line by line"),
        (lambda s, n, t, x, g: s.step(n, t, x, generator=g), ".prev_sample"),
        (lambda s, n, t, x, g: s.stepp(n, t, x), "AttributeError"),
    ]
    for wrong_fn, words in cases:
        assert not checks.check_ancestral_step(wrong_fn, pipe)
        out = capsys.readouterr().out
        assert out.startswith("Not quite") and words in out, out
        assert pipe.scheduler is original
    assert not checks.check_ancestral_step(..., pipe)
    assert not checks.check_ancestral_step(lambda s, n, t, x, g: ..., pipe)
    assert capsys.readouterr().out.count("Not yet solved") == 2
