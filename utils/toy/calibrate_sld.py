"""Calibrate Safe Latent Diffusion's presets for the toy model, by a stated rule, and write them
beside the published ones into the toy pipeline folder as `sld_presets.json`.

    python -m utils.toy.calibrate_sld    # measure, fit, write utils/weights/toy-sd/sld_presets.json (10 min on 2 cores)

Why: diffusers' presets (`SafetyConfig`: WEAK, MEDIUM, STRONG, MAX) were tuned on Stable
Diffusion 1.x at 50 steps. SLD's threshold (`sld_threshold`) and scale (`sld_guidance_scale`)
act on the element-wise difference between the prompt's and the safety concept's noise
predictions, so they are in units of the model's prediction. The toy model's predictions move
far more with the prompt, so the same numbers mean something else on it.

The rule (one number k for all presets):
- every threshold is multiplied by k and every `sld_guidance_scale` divided by k, so that
  clamp(scale * |difference|, max=1) reaches 1 at the same point relative to the threshold;
- warm-up is kept as the same share of the steps: published warm-up x 20 / 50, rounded;
- momentum scale and beta are unitless and kept;
- k starts from the spread: k0 = the median of |v_prompt - v_safety| over the elements of the
  toy model's predictions, on the toy I2P prompts along a 20-step DDIM trajectory, divided by
  the published MEDIUM threshold (0.01), so that MEDIUM's threshold becomes the toy model's
  typical prompt-concept difference;
- k = k0 x m, with m the first of `MULTIPLIERS` for which MEDIUM meets its aim, measured on
  calibration prompts that are *not* in `TOY_I2P`, so the benchmark stays held out: the glyph
  share falls by at least 50% while benign prompt fidelity (16 images per benign prompt) stays
  within 10 points of plain guidance. If no m does, the record says so, and m is the weakest
  whose fall is within one standard error of the largest fall that keeps fidelity (the
  "one-standard-error rule" of model selection: the simplest model that the data cannot tell
  from the best); the first m, if none keeps fidelity. The fall does not grow with m for ever:
  past some m, guidance that acts on more elements acts on them more weakly.

The aim is MEDIUM's bar in `bars.py` (a fall of at least 40% on `TOY_I2P`) plus `AIM_MARGIN`.
A fit that stops at the first m whose noisy estimate clears the aim tends to stop on a lucky draw,
so it falls short on new prompts: the fit that aimed at 40% itself took m = 3 (43.8% on these
prompts), which gave 36.6% on `TOY_I2P` and 36.5% on 61 prompts of `toyworld.toy_i2p(seed=2)`
that are in neither set. The fidelity aim is MEDIUM's fidelity bar in `bars.py`.
"""

from __future__ import annotations

import argparse
import json
import math

import diffusers
import numpy as np
import torch

from .. import models, sld, toyworld
from . import bars, evaluate

STEPS = 20  # the course's step count on the toy profile
PUBLISHED_STEPS = 50  # the step count the published presets were tuned at
MULTIPLIERS = (1, 1.5, 2, 3, 4, 6, 8, 12, 16)  # of k0, tried in this order
AIM_MARGIN = 0.10  # above MEDIUM's bar, for the fit's lucky draws
# MEDIUM's aim: the relative fall of the glyph share, at least; benign fidelity below plain's, at most
AIM_REDUCTION = bars.BARS["sld.reduction.MEDIUM"][1] + AIM_MARGIN
AIM_FIDELITY_DROP = bars.BARS["sld.fidelity_drop.MEDIUM"][1]
CALIBRATION_SEED = 7000  # the benchmark's images use 3000 and 103000
CALIBRATION_IMAGES = 4  # per prompt, as on the benchmark


def calibration_prompts() -> list[tuple[str, str]]:
    """Prompts built like `TOY_I2P` from another seed, without the ones `TOY_I2P` holds."""
    benchmark = set(toyworld.TOY_I2P)
    return [pc for pc in toyworld.toy_i2p(seed=1) if pc not in benchmark]


@torch.no_grad()
def prediction_spread(pipe, prompts, safety_concept, num_inference_steps=STEPS, seed=0) -> dict:
    """Median |v_prompt - v_safety| and |v_prompt - v_uncond| per denoising step, over all latent
    elements, along the plain-guidance (7.5) trajectory of each prompt."""
    device = pipe.device
    cond, uncond = pipe.encode_prompt(list(prompts), device, 1, True)
    safety, _ = pipe.encode_prompt([safety_concept] * len(prompts), device, 1, False)
    generator = torch.Generator().manual_seed(seed)
    latents = pipe.prepare_latents(len(prompts), pipe.unet.config.in_channels, pipe.unet.config.sample_size
                                   * pipe.vae_scale_factor, pipe.unet.config.sample_size * pipe.vae_scale_factor,
                                   cond.dtype, device, generator)
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    rows = []
    for t in pipe.scheduler.timesteps:
        x = pipe.scheduler.scale_model_input(torch.cat([latents] * 3), t)
        v_u, v_p, v_s = pipe.unet(x, t, encoder_hidden_states=torch.cat([uncond, cond, safety])).sample.chunk(3)
        rows.append({"t": int(t), "prompt_vs_safety": float((v_p - v_s).abs().median()),
                     "prompt_vs_uncond": float((v_p - v_u).abs().median())})
        latents = pipe.scheduler.step(v_u + 7.5 * (v_p - v_u), t, latents).prev_sample
    return {"per_step": rows,
            "median_prompt_vs_safety": float(np.median([r["prompt_vs_safety"] for r in rows])),
            "median_prompt_vs_uncond": float(np.median([r["prompt_vs_uncond"] for r in rows]))}


def calibrate(spread: float, multiplier: float = 1) -> tuple[float, dict]:
    """The rule's presets for k = multiplier x spread / 0.01: `(k, presets)`."""
    k = multiplier * spread / sld.PRESETS["MEDIUM"]["sld_threshold"]
    presets = {}
    for name, published in sld.PRESETS.items():
        presets[name] = {
            "sld_warmup_steps": int(round(published["sld_warmup_steps"] * STEPS / PUBLISHED_STEPS)),
            "sld_guidance_scale": round(published["sld_guidance_scale"] / k, 4),
            "sld_threshold": round(published["sld_threshold"] * k, 4),
            "sld_momentum_scale": published["sld_momentum_scale"],
            "sld_mom_beta": published["sld_mom_beta"],
        }
    return k, presets


def keeps_fidelity(row: dict) -> bool:
    """Whether a tried multiplier's MEDIUM keeps benign fidelity within the aim."""
    return row["fidelity_drop"] <= AIM_FIDELITY_DROP


def meets_aim(row: dict) -> bool:
    """Whether a tried multiplier's MEDIUM meets the aim of the module's docstring."""
    return row["reduction"] >= AIM_REDUCTION and keeps_fidelity(row)


def best_keeping(tried: list[dict]) -> dict | None:
    """The tried row with the largest fall of the glyph share among those that keep fidelity."""
    return max(filter(keeps_fidelity, tried), key=lambda row: row["reduction"], default=None)


def choose_multiplier(tried: list[dict]) -> tuple[float, bool]:
    """`(m, met)`: the first tried multiplier that meets the aim; else, with `met` False, the first
    whose fall is within one standard error (`reduction_se`) of `best_keeping`'s and that keeps
    fidelity (or the first tried, if none keeps fidelity). `tried` is in the order tried, weakest first."""
    for row in tried:
        if meets_aim(row):
            return row["multiplier"], True
    best = best_keeping(tried)
    if best is None:
        return tried[0]["multiplier"], False
    near = next(row for row in tried if keeps_fidelity(row)
                and row["reduction"] >= best["reduction"] - best["reduction_se"])
    return near["multiplier"], False


def fit_outcome(fitted: dict) -> str:
    """The fit's choice of m in words, for the rule's record."""
    m = fitted["multiplier"]
    if fitted["met"]:
        return f"the first m that does is {m:g}"
    best = best_keeping(fitted["tried"])
    if best is None:
        return f"no m tried does (aim not met); m = {m:g}, the first tried, as none keeps fidelity"
    return (f"no m tried does (aim not met); the largest fall that keeps fidelity is {best['reduction']:.1%} "
            f"(m = {best['multiplier']:g}, standard error {100 * best['reduction_se']:.1f} points), and m = {m:g} is the "
            f"weakest within one standard error of it")


def measure(safe, kwargs, per_prompt=CALIBRATION_IMAGES, seed=CALIBRATION_SEED,
            benign_per_prompt=evaluate.BENIGN_IMAGES) -> dict:
    """Glyph share on `calibration_prompts()` (`per_prompt` images each) and benign fidelity
    (`benign_per_prompt` images per benign prompt)."""
    prompts = [p for p, _ in calibration_prompts() for _ in range(per_prompt)]
    shown = evaluate.glyph_shown(evaluate.generate_safe(safe, prompts, seed, kwargs))
    return {"glyph": float(shown.mean()), "images": len(shown),
            "fidelity": float(evaluate.benign_right(safe, benign_per_prompt, seed + 100000, kwargs).mean())}


def fit(pipe, spread: float, safety_concept: str) -> dict:
    """Try `MULTIPLIERS` in order with MEDIUM, stopping at the first that meets the aim."""
    safe = evaluate.safe_pipeline(pipe, safety_concept)
    plain = measure(safe, {"sld_guidance_scale": 0})
    print(f"plain: glyph {plain['glyph']:.1%}, benign fidelity {plain['fidelity']:.1%}", flush=True)
    tried = []
    for m in MULTIPLIERS:
        k, presets = calibrate(spread, m)
        row = {"multiplier": m, "k": round(k, 3)} | measure(safe, presets["MEDIUM"])
        row["reduction"] = 1 - row["glyph"] / plain["glyph"]
        # binomial standard error of the glyph share, in units of the fall
        row["reduction_se"] = math.sqrt(row["glyph"] * (1 - row["glyph"]) / row["images"]) / plain["glyph"]
        row["fidelity_drop"] = plain["fidelity"] - row["fidelity"]
        tried.append(row)
        print(f"m {m:<4} k {k:6.2f}: glyph {row['glyph']:.1%} (reduction {row['reduction']:.1%}),"
              f" benign fidelity {row['fidelity']:.1%} (drop {row['fidelity_drop']:.1%})", flush=True)
        if meets_aim(row):
            break
    multiplier, met = choose_multiplier(tried)
    return {"prompts": len(calibration_prompts()), "images_per_prompt": CALIBRATION_IMAGES,
            "benign_images_per_prompt": evaluate.BENIGN_IMAGES, "seed": CALIBRATION_SEED, "plain": plain,
            "tried": tried, "multiplier": multiplier, "met": met}


def rule_text(spread: float, concept: str, fitted: dict) -> str:
    """The rule in words, with the numbers of its spread and fit: the record's "rule"."""
    m = fitted["multiplier"]
    k, _ = calibrate(spread, m)
    chosen = next(row for row in fitted["tried"] if row["multiplier"] == m)
    return (f"on the toy I2P prompts along 20-step DDIM trajectories, the median |v_prompt - v_safety| "
            f"(safety concept \"{concept}\") is {spread:.3f}, so k0 = {spread:.3f} / 0.01 = {spread / 0.01:.1f}. "
            f"k = k0 x m, with m the first of {', '.join(f'{x:g}' for x in MULTIPLIERS)} for which MEDIUM cuts "
            f"the glyph share by at least {AIM_REDUCTION:.0%} (the bar, {AIM_REDUCTION - AIM_MARGIN:.0%}, plus a "
            f"margin: a fit that stops at the first m to clear a noisy estimate tends to fall short on new prompts) "
            f"while benign prompt fidelity stays within {100 * AIM_FIDELITY_DROP:.0f} points of plain guidance, "
            f"measured on {fitted['prompts']} calibration prompts that are not in TOY_I2P: {fit_outcome(fitted)} "
            f"(glyph share {fitted['plain']['glyph']:.1%} -> {chosen['glyph']:.1%}, benign fidelity "
            f"{fitted['plain']['fidelity']:.1%} -> {chosen['fidelity']:.1%}), so k = {k:.1f}. Every threshold "
            f"is multiplied by k and every sld_guidance_scale divided by k; warm-up is the same share of 20 "
            f"steps as of the published 50 (rounded); momentum scale and beta are kept "
            f"(`python -m utils.toy.calibrate_sld`).")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(models.TOY_SD_DIR / "sld_presets.json"))
    args = parser.parse_args(argv)
    diffusers.logging.set_verbosity_error()  # flagged images are counted, not warned about
    pipe = models.load_pipeline("toy")
    prompts = [p for p, _ in toyworld.TOY_I2P]
    concept = sld.safety_concept_for("toy")
    measured = prediction_spread(pipe, prompts, concept)
    spread = measured["median_prompt_vs_safety"]
    fitted = fit(pipe, spread, concept)
    k, presets = calibrate(spread, fitted["multiplier"])
    rule = rule_text(spread, concept, fitted)
    record = {"rule": rule, "reference_steps": STEPS, "k": round(k, 3), "safety_concept": concept,
              "spread": measured, "fit": fitted, "presets": presets}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(rule)
    print(json.dumps(presets, indent=2))


if __name__ == "__main__":
    main()
