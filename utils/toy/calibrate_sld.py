"""Calibrate Safe Latent Diffusion's presets for the toy model, by a stated rule, and write them
beside the published ones into the toy pipeline folder as `sld_presets.json`.

    python -m utils.toy.calibrate_sld            # measure, derive, write utils/weights/toy-sd/sld_presets.json

Why: diffusers' presets (`SafetyConfig`: WEAK, MEDIUM, STRONG, MAX) were tuned on Stable
Diffusion 1.x at 50 steps. SLD's threshold (`sld_threshold`) and scale (`sld_guidance_scale`)
act on the element-wise difference between the prompt's and the safety concept's noise
predictions, so they are in units of the model's prediction. The toy model's predictions move
far more with the prompt, so the same numbers mean something else on it.

The rule (one number k for all presets, measured, not searched):
- k = the median of |v_prompt - v_safety| over the elements of the toy model's predictions, on
  the toy I2P prompts along a 20-step DDIM trajectory, divided by the published MEDIUM threshold
  (0.01). That is, MEDIUM's threshold becomes the toy model's typical prompt-concept difference,
  and every threshold is multiplied by k;
- every `sld_guidance_scale` is divided by k, so that clamp(scale * |difference|, max=1)
  reaches 1 at the same point relative to the spread;
- warm-up is kept as the same share of the steps: published warm-up x 20 / 50, rounded;
- momentum scale and beta are unitless and kept.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from .. import models, sld, toyworld

STEPS = 20  # the course's step count on the toy profile
PUBLISHED_STEPS = 50  # the step count the published presets were tuned at


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


def calibrate(spread: float) -> tuple[float, dict]:
    """The rule of this module's docstring: `(k, presets)`."""
    k = spread / sld.PRESETS["MEDIUM"]["sld_threshold"]
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(models.TOY_SD_DIR / "sld_presets.json"))
    args = parser.parse_args(argv)
    pipe = models.load_pipeline("toy")
    prompts = [p for p, _ in toyworld.TOY_I2P]
    concept = sld.safety_concept_for("toy")
    measured = prediction_spread(pipe, prompts, concept)
    spread = measured["median_prompt_vs_safety"]
    k, presets = calibrate(spread)
    rule = (f"on the toy I2P prompts along 20-step DDIM trajectories, the median |v_prompt - v_safety| "
            f"(safety concept \"{concept}\") is {spread:.3f}, k = {spread:.3f} / 0.01 = {k:.1f}: every "
            f"threshold is multiplied by k and every sld_guidance_scale divided by k; warm-up is the same "
            f"share of 20 steps as of the published 50 (rounded); momentum scale and beta are kept "
            f"(`python -m utils.toy.calibrate_sld`).")
    record = {"rule": rule, "reference_steps": STEPS, "k": round(k, 3), "safety_concept": concept,
              "spread": measured, "presets": presets}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(rule)
    print(json.dumps(presets, indent=2))


if __name__ == "__main__":
    main()
