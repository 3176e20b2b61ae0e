"""utils.sld: equal to diffusers' StableDiffusionPipelineSafe, the guidance term by hand, I2P's
metrics by hand, clear errors on bad input, and the exercise checks of notebook 04."""

import json
import warnings

import numpy as np
import pytest
import torch

from utils import models, sld
from utils.checks import sld as checks

STEPS = 16  # more than WEAK's warm-up of 15, so every preset acts
PROMPTS = ["a red circle with a cross", "a blue square at night"]


@pytest.fixture(scope="module")
def pipe():
    return models.load_pipeline("toy", device="cpu")


@pytest.fixture(scope="module")
def unchecked(pipe):
    """The toy pipeline without its safety checker, so images are compared before any blackout."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(**{**pipe.components, "safety_checker": None}, requires_safety_checker=False)


@pytest.fixture(scope="module")
def reference(pipe):
    """diffusers' deprecated SLD pipeline over the same components, checker off, its own scheduler copy."""
    from diffusers import DDIMScheduler
    from diffusers.pipelines.deprecated.stable_diffusion_safe import StableDiffusionPipelineSafe

    components = {k: v for k, v in pipe.components.items() if k not in ("safety_checker", "image_encoder")}
    components["scheduler"] = DDIMScheduler.from_config(pipe.scheduler.config)
    safe = StableDiffusionPipelineSafe(**components, safety_checker=None, requires_safety_checker=False)
    safe.set_progress_bar_config(disable=True)
    safe.safety_concept = sld.TOY_SAFETY_CONCEPT
    return safe


def run_reference(reference, preset, **kwargs):
    from diffusers.pipelines.deprecated.stable_diffusion_safe import SafetyConfig

    hyperparameters = getattr(SafetyConfig, preset) if preset else {"sld_guidance_scale": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Safety checker disabled!" for plain guidance
        return reference(PROMPTS, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
                         output_type="np", **{**hyperparameters, **kwargs}).images


def run_ours(pipe, preset, **kwargs):
    return sld.generate(pipe, PROMPTS, preset=preset, num_inference_steps=STEPS,
                        generator=torch.Generator().manual_seed(0), output_type="np", **kwargs)


# ---------------------------------------------------------------- equal to diffusers


def test_presets_and_safety_concept_are_diffusers_own(reference):
    from diffusers.pipelines.deprecated.stable_diffusion_safe import SafetyConfig, StableDiffusionPipelineSafe

    for name in ("WEAK", "MEDIUM", "STRONG", "MAX"):
        assert sld.PRESETS[name] == getattr(SafetyConfig, name)
    assert set(sld.PRESETS) == {"WEAK", "MEDIUM", "STRONG", "MAX"}
    fresh = StableDiffusionPipelineSafe(**{k: getattr(reference, k) for k in
                                           ("vae", "text_encoder", "tokenizer", "unet", "scheduler", "feature_extractor")},
                                        safety_checker=None, requires_safety_checker=False)
    assert sld.DEFAULT_SAFETY_CONCEPT == fresh.safety_concept


@pytest.mark.parametrize("preset", [None, "WEAK", "MEDIUM", "STRONG", "MAX"])
def test_equal_to_diffusers_safe_pipeline(unchecked, reference, preset):
    ours = run_ours(unchecked, preset)
    theirs = run_reference(reference, preset)
    assert ours.images.shape == theirs.shape == (2, 32, 32, 3)
    assert np.abs(ours.images - theirs).max() <= 1e-4
    assert ours.nsfw_content_detected is None
    assert (ours.applied_safety_concept is None) == (preset is None)


def test_equal_with_overrides_and_negative_prompt(unchecked, reference):
    kwargs = dict(sld_threshold=0.5, sld_warmup_steps=3)
    ours = run_ours(unchecked, "MEDIUM", negative_prompt="a green shape", **kwargs)  # one string for every prompt
    theirs = run_reference(reference, "MEDIUM", negative_prompt=["a green shape"] * 2, **kwargs)
    assert np.abs(ours.images - theirs).max() <= 1e-4


def test_a_single_prompt_takes_a_string_negative_prompt(unchecked):
    """A string prompt with a string negative prompt: the same image as the one-element lists."""
    def one(prompt, negative):
        return sld.generate(unchecked, prompt, preset="MEDIUM", negative_prompt=negative, num_inference_steps=STEPS,
                            generator=torch.Generator().manual_seed(0), output_type="np").images
    assert np.abs(one(PROMPTS[0], "a green shape") - one(PROMPTS[:1], ["a green shape"])).max() == 0


def test_sld_changes_the_image(unchecked):
    plain = run_ours(unchecked, None).images
    assert np.abs(run_ours(unchecked, "MAX").images - plain).max() > 0.05


def test_plain_equals_the_pipeline_call_with_its_checker(pipe):
    """preset=None is the ordinary pipeline call; the pipeline's own checker runs afterwards."""
    expected = pipe(PROMPTS, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), output_type="np")
    ours = run_ours(pipe, None)
    assert np.abs(ours.images - expected.images).max() <= 1e-4
    assert ours.nsfw_content_detected == expected.nsfw_content_detected
    assert len(ours.nsfw_content_detected) == 2 and all(isinstance(f, bool) for f in ours.nsfw_content_detected)


def test_one_batched_unet_call_per_step(unchecked):
    batches = []
    hook = unchecked.unet.register_forward_hook(lambda module, args, output: batches.append(args[0].shape[0]))
    try:
        run_ours(unchecked, "MEDIUM")
        run_ours(unchecked, None)
    finally:
        hook.remove()
    assert batches == [3 * len(PROMPTS)] * STEPS + [2 * len(PROMPTS)] * STEPS


def test_callback_and_per_step_magnitudes(unchecked):
    seen = []
    out = run_ours(unchecked, "MEDIUM", callback=lambda step, t, tensors: seen.append((step, sorted(tensors))))
    assert [s for s, _ in seen] == list(range(STEPS))
    assert seen[0][1] == ["latents", "noise_pred_safety", "noise_pred_text", "noise_pred_uncond", "safety_guidance"]
    from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput

    assert isinstance(out, StableDiffusionPipelineOutput) and out[0] is out.images  # diffusers' output type
    magnitudes = out.safety_guidance_per_step
    warmup = sld.PRESETS["MEDIUM"]["sld_warmup_steps"]
    assert magnitudes.shape == (STEPS, 2)
    assert torch.all(magnitudes[:warmup] == 0) and torch.all(magnitudes[warmup:] > 0)
    assert run_ours(unchecked, None).safety_guidance_per_step is None


def test_default_safety_concept_follows_the_profile(pipe):
    assert sld.profile_of(pipe) == "toy"
    assert sld.safety_concept_for("toy") == sld.TOY_SAFETY_CONCEPT == "a shape with a cross and bars and a ring"
    assert sld.safety_concept_for("sd15") == sld.DEFAULT_SAFETY_CONCEPT
    with pytest.raises(ValueError, match="toy, sd15"):
        sld.safety_concept_for("sdxl")


# ---------------------------------------------------------------- the guidance term by hand


def test_safety_guidance_by_hand():
    uncond = torch.tensor([0.0, 0.0, 0.0, 0.0])
    text = torch.tensor([1.0, 1.0, 1.0, 1.0])
    safety = torch.tensor([0.875, 1.5, 2.0, 1.0078125])  # text - safety: 0.125, -0.5, -1.0, -2**-7 (exact in binary)
    hp = dict(sld_guidance_scale=4.0, sld_threshold=0.05, sld_momentum_scale=0.5, sld_mom_beta=0.25, sld_warmup_steps=1)
    # scale = min(4 |text - safety|, 1) = [0.5, 1, 1, 2**-5]; off where text - safety >= 0.05: [0, 1, 1, 2**-5]
    # gamma = scale * (safety - uncond) = [0, 1.5, 2.0, 2**-5 * 1.0078125]; momentum 0 -> 0.75 * gamma
    guidance, momentum = sld.safety_guidance(uncond, text, safety, None, 0, **hp)
    expected_gamma = torch.tensor([0.0, 1.5, 2.0, 2**-5 * 1.0078125])
    assert torch.equal(guidance, torch.zeros(4)), "step 0 is in the warm-up: nothing is subtracted"
    assert torch.allclose(momentum, 0.75 * expected_gamma)
    # step 1: gamma = same + 0.5 * momentum; momentum = 0.25 * m + 0.75 * gamma
    guidance2, momentum2 = sld.safety_guidance(uncond, text, safety, momentum, 1, **hp)
    gamma2 = expected_gamma + 0.5 * momentum
    assert torch.allclose(guidance2, gamma2)
    assert torch.allclose(momentum2, 0.25 * momentum + 0.75 * gamma2)


def test_safety_guidance_threshold_is_in_prediction_units():
    uncond, text = torch.zeros(3), torch.zeros(3)
    safety = torch.tensor([0.005, -0.02, 0.5])  # text - safety: -0.005, 0.02, -0.5
    medium = {**sld.PRESETS["MEDIUM"], "sld_momentum_scale": 0.0}
    guidance, _ = sld.safety_guidance(uncond, text, safety, None, 10, **medium)
    assert torch.allclose(guidance, torch.tensor([0.005, 0.0, 0.5])), "only 0.02 >= 0.01 is switched off"


# ---------------------------------------------------------------- I2P's metrics


def test_inappropriate_probability():
    assert sld.inappropriate_probability([True, False, False, False]) == 0.25
    assert sld.inappropriate_probability(np.array([1, 1, 0])) == pytest.approx(2 / 3)
    for bad in ([], [0.5, 1], [[True]]):
        with pytest.raises(ValueError):
            sld.inappropriate_probability(bad)


def test_expected_max_inappropriateness():
    assert sld.expected_max_inappropriateness([0.3] * 7) == (pytest.approx(0.3), pytest.approx(0.0))
    # 24 clean prompts and one always bad: a draw of 25 (with replacement) holds it with
    # probability 1 - (24/25)^25 = 0.6396; the maximum is 1 then, else 0.
    p = 1 - (24 / 25) ** 25
    mean, std = sld.expected_max_inappropriateness([0.0] * 24 + [1.0])
    assert mean == pytest.approx(p, abs=0.015) and std == pytest.approx((p * (1 - p)) ** 0.5, abs=0.01)
    # k=1 draws single prompts: the mean share
    assert sld.expected_max_inappropriateness([0.0, 0.5, 1.0], k=1)[0] == pytest.approx(0.5, abs=0.02)
    assert sld.expected_max_inappropriateness([0.1, 0.9], seed=3) == sld.expected_max_inappropriateness([0.1, 0.9], seed=3)
    for bad in ([], [1.5], [-0.1], [[0.1]]):
        with pytest.raises(ValueError, match="per_prompt_shares"):
            sld.expected_max_inappropriateness(bad)
    with pytest.raises(ValueError, match="at least 1"):
        sld.expected_max_inappropriateness([0.1], k=0)


# ---------------------------------------------------------------- calibrated presets


def test_calibrated_presets(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "TOY_SD_DIR", tmp_path)
    assert sld.calibrated_presets("toy") is None and sld.calibration_rule() is None
    presets = {name: {**values, "sld_threshold": 0.5} for name, values in sld.PRESETS.items()}
    (tmp_path / "sld_presets.json").write_text(json.dumps({"rule": "a rule", "reference_steps": 50, "presets": presets}))
    assert sld.calibrated_presets("toy") == presets
    assert sld.calibration_rule("toy") == "a rule"
    assert sld.calibrated_presets("sd15") is None
    (tmp_path / "sld_presets.json").write_text(json.dumps({"presets": {"WEAK": {"sld_threshold": 1}}}))
    with pytest.raises(ValueError, match="lacks"):
        sld.calibrated_presets("toy")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, message", [
    (dict(preset="EXTREME"), "WEAK, MEDIUM, STRONG, MAX"),
    (dict(preset="MEDIUM", sld_guidance_scale=-1), "sld_guidance_scale must be >= 0"),
    (dict(preset="MEDIUM", sld_momentum_scale=-0.1), "sld_momentum_scale must be >= 0"),
    (dict(preset="MEDIUM", sld_mom_beta=1.5), "between 0 and 1"),
    (dict(preset="MEDIUM", sld_warmup_steps=STEPS + 1), "longer than num_inference_steps"),
    (dict(preset="WEAK", num_inference_steps=10), "longer than num_inference_steps"),
    (dict(preset="MEDIUM", sld_warmup_steps=2.5), "integer"),
    (dict(preset="MEDIUM", safety_concept="  "), "non-empty"),
    (dict(preset="MEDIUM", sld_treshold=0.1), "Unknown SLD hyperparameter"),
    (dict(preset=None, sld_threshold=0.1), "start from a preset"),
    (dict(preset="MEDIUM", guidance_scale=1.0), "guidance_scale > 1"),
    (dict(preset="MEDIUM", prompt=[]), "non-empty list"),
])
def test_bad_input_is_explained(unchecked, kwargs, message):
    kwargs = {"prompt": PROMPTS[0], "num_inference_steps": STEPS, **kwargs}
    with pytest.raises(ValueError, match=message):
        sld.generate(unchecked, kwargs.pop("prompt"), **kwargs)


def test_preset_names_are_case_insensitive():
    assert sld.sld_config("strong", 20) == sld.PRESETS["STRONG"]
    assert sld.sld_config(None, 20) is None


# ---------------------------------------------------------------- exercise checks


def verdict(capsys, check, *args):
    ok = check(*args)
    return ok, capsys.readouterr().out


def test_check_safety_guidance(capsys):
    assert verdict(capsys, checks.check_safety_guidance, sld.safety_guidance)[0]
    for mistake, message in checks._MISTAKES.items():
        ok, out = verdict(capsys, checks.check_safety_guidance, checks._variant(**{mistake: True}))
        assert not ok and message in out, mistake

    def no_momentum(u, p, s, momentum, step, **hp):
        return sld.safety_guidance(u, p, s, momentum, step, **{**hp, "sld_momentum_scale": 0.0})

    ok, out = verdict(capsys, checks.check_safety_guidance, no_momentum)
    assert not ok and "differs from the paper's" in out
    ok, out = verdict(capsys, checks.check_safety_guidance, lambda u, p, s, m, step, **hp: p - u)
    assert not ok and "pair of tensors" in out
    ok, out = verdict(capsys, checks.check_safety_guidance, lambda *args, **kwargs: ...)
    assert not ok and "Not yet solved" in out
    ok, out = verdict(capsys, checks.check_safety_guidance, ...)
    assert not ok and "Not yet solved" in out


def test_check_warmup(capsys):
    assert verdict(capsys, checks.check_warmup, 4)[0]
    for answer, text in [(10, "larger share"), (16, "with* safety guidance"), (7, "compute the share"),
                         (0.2, "whole number")]:
        ok, out = verdict(capsys, checks.check_warmup, answer)
        assert not ok and text in out and "4" not in out
    assert "Not yet solved" in verdict(capsys, checks.check_warmup, ...)[1]


def test_check_preset_choice(capsys):
    results = {"plain": {"inappropriate": 0.9, "fidelity_loss": 0.0},
               "MEDIUM": {"inappropriate": 0.5, "fidelity_loss": 0.05},
               "STRONG": {"inappropriate": 0.3, "fidelity_loss": 0.09},
               "MAX": {"inappropriate": 0.1, "fidelity_loss": 0.3}}
    assert verdict(capsys, checks.check_preset_choice, "STRONG", results, 0.1)[0]
    assert verdict(capsys, checks.check_preset_choice, "MAX", results, 0.5)[0]
    tied = {**results, "MAX calibrated": dict(results["MAX"])}
    assert verdict(capsys, checks.check_preset_choice, "MAX calibrated", tied, 0.5)[0], "a tie is right too"
    ok, out = verdict(capsys, checks.check_preset_choice, "MAX", results, 0.1)
    assert not ok and "more benign fidelity" in out
    ok, out = verdict(capsys, checks.check_preset_choice, "MEDIUM", results, 0.1)
    assert not ok and "another method" in out
    ok, out = verdict(capsys, checks.check_preset_choice, "HUGE", results, 0.1)
    assert not ok and "not a method" in out
    assert "Not yet solved" in verdict(capsys, checks.check_preset_choice, ..., results, 0.1)[1]


def test_check_expected_max(capsys):
    def right(shares, k, n, seed):
        return sld.expected_max_inappropriateness(shares, k, n, seed)

    def without_replacement(shares, k, n, seed):
        rng = np.random.default_rng(seed)
        maxima = [max(rng.choice(shares, size=min(k, len(shares)), replace=False)) for _ in range(n)]
        return float(np.mean(maxima)), float(np.std(maxima))

    def mean_share(shares, k, n, seed):
        return float(np.mean(shares)), 0.0

    def other_rng(shares, k, n, seed):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(len(shares), (n, k), generator=g)
        maxima = torch.tensor(shares, dtype=torch.float64)[idx].max(dim=1).values
        return float(maxima.mean()), float(maxima.std())

    assert verdict(capsys, checks.check_expected_max, right)[0]
    assert verdict(capsys, checks.check_expected_max, other_rng)[0], "any random generator is fine"
    ok, out = verdict(capsys, checks.check_expected_max, without_replacement)
    assert not ok and "with replacement" in out
    ok, out = verdict(capsys, checks.check_expected_max, mean_share)
    assert not ok and "maximum" in out
    ok, out = verdict(capsys, checks.check_expected_max, lambda shares, k, n, seed: ...)
    assert not ok and "Not yet solved" in out
