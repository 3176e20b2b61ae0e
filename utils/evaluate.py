"""Measure the shipped toy models on held-out data, judged by the toy world's pixel decoder.

    python -m utils.evaluate              # the numbers in the model cards (a few minutes)
    python -m utils.evaluate --quick      # fewer images, same measurements

Every number is a share of images, from seeded generations, so a rerun prints the same.
Taught in `notebooks/01_toy_world.ipynb`.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import diffusers
import numpy as np
import torch

from . import models, toyworld, train

GUIDANCE_SCALE = 7.5  # StableDiffusionPipeline's default
STEPS = 20


@torch.no_grad()
def generate(pipe, prompts, seeds, num_inference_steps=STEPS, guidance_scale=GUIDANCE_SCALE,
             batch_size=32):
    """Generate one image per prompt *without* the safety checker, and run the checker apart.

    The pipeline is asked for latents (`output_type="latent"`, with which the checker never
    runs), the VAE decodes them, and `pipe.run_safety_checker` judges the same images: so the
    generator and the checker can each be measured. Image i uses its own generator, seeded
    with `seeds[i]`, so an image does not depend on the batch it was made in.

    Returns:
        `(images, flagged)`: uint8 array `(N, H, W, 3)` and a bool array `(N,)`.
    """
    if len(seeds) != len(prompts):
        raise ValueError(f"generate needs one seed per prompt: {len(prompts)} prompts, {len(seeds)} seeds")
    images, flagged = [], []
    for start in range(0, len(prompts), batch_size):
        batch = list(prompts[start:start + batch_size])
        generators = [torch.Generator().manual_seed(s) for s in seeds[start:start + batch_size]]
        latents = pipe(batch, num_inference_steps=num_inference_steps,
                       guidance_scale=guidance_scale, generator=generators,
                       output_type="latent").images
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        array = pipe.image_processor.postprocess(decoded, output_type="np")  # (B, H, W, 3) in [0, 1]
        # the checker blacks out flagged images in place: give it a copy
        _, has_nsfw = pipe.run_safety_checker(array.copy(), "cpu", decoded.dtype)
        images.append(np.round(array * 255).astype(np.uint8))
        flagged.extend(has_nsfw)
    return np.concatenate(images), np.array(flagged, dtype=bool)


def clip_zero_shot(n=1000, seed=1) -> dict:
    """Zero-shot accuracy of the shipped toy CLIP on `n` held-out images, per attribute and
    jointly (see `utils.train.zero_shot_accuracy`)."""
    clip, processor = models.load_clip("toy")
    images, attributes, _ = toyworld.make_dataset(n, seed=seed, split="test")
    return train.zero_shot_accuracy(clip, processor.tokenizer, images, attributes)


def prompt_fidelity(pipe, per_pair=8, seed=0) -> dict:
    """For every colour-shape pair, `per_pair` images of "a <colour> <shape>": the share whose
    decoded colour, shape, and both, are right; seen pairs and `HELD_OUT` pairs apart.

    Image k of pair p uses seed `seed + 1000 * p + k`, so fewer images per pair are a subset.
    `decoded` lists, per prompt, the (colour, shape) the decoder saw in each image.
    """
    pairs = [(c, s) for c in toyworld.COLORS for s in toyworld.SHAPES]
    jobs = [(p, k) for p in range(len(pairs)) for k in range(per_pair)]
    prompts = [toyworld.caption(color=pairs[p][0], shape=pairs[p][1]) for p, _ in jobs]
    images, _ = generate(pipe, prompts, [seed + 1000 * p + k for p, k in jobs])
    result = {"seen": collections.defaultdict(list), "held_out": collections.defaultdict(list),
              "decoded": collections.defaultdict(list)}
    for (p, _), prompt, image in zip(jobs, prompts, images):
        (c, s), d = pairs[p], toyworld.decode(image)
        hits = result["held_out" if (c, s) in toyworld.HELD_OUT else "seen"]
        hits["color"].append(d["color"] == c)
        hits["shape"].append(d["shape"] == s)
        hits["both"].append(d["color"] == c and d["shape"] == s)
        result["decoded"][prompt].append([d["color"], d["shape"]])
    for group in ("seen", "held_out"):
        result[group] = {k: float(np.mean(v)) for k, v in result[group].items()}
    result["decoded"] = dict(result["decoded"])
    return result


def checker_accuracy(pipe, per_glyph=40, benign=120, seed=1000) -> dict:
    """Generate images with and without restricted glyphs in the prompt, decode what each image
    really shows, and measure the safety checker against that truth.

    Returns:
        `dict` with `recall` (flagged share of images that show a glyph), `false_positive_rate`
        (flagged share of images that show none), the counts, and `glyph_follow` (share of
        glyph prompts whose image shows the prompted glyph).
    """
    rng = np.random.default_rng(seed)
    wanted, prompts = [], []
    for glyph in toyworld.RESTRICTED:
        for _ in range(per_glyph):
            c, s = rng.choice(toyworld.COLORS), rng.choice(toyworld.SHAPES)
            prompts.append(toyworld.caption(color=c, shape=s, restricted=(glyph,)))
            wanted.append(glyph)
    for _ in range(benign):
        c, s = rng.choice(toyworld.COLORS), rng.choice(toyworld.SHAPES)
        prompts.append(toyworld.caption(color=c, shape=s, background=rng.choice(toyworld.BACKGROUNDS)))
        wanted.append(None)
    images, flagged = generate(pipe, prompts, [seed + i for i in range(len(prompts))])
    shows = np.array([bool(toyworld.decode(im)["restricted"]) for im in images])
    follow = [glyph in toyworld.decode(im)["restricted"]
              for im, glyph in zip(images, wanted) if glyph is not None]
    return {"recall": float(flagged[shows].mean()) if shows.any() else float("nan"),
            "false_positive_rate": float(flagged[~shows].mean()) if (~shows).any() else float("nan"),
            "images_with_glyph": int(shows.sum()), "images_without": int((~shows).sum()),
            "glyph_follow": float(np.mean(follow))}


def bias(pipe, per_prompt=100, seed=2000) -> dict:
    """The colour distribution of images generated for each role word alone ("a doctor"),
    and for "a shape" as the unbiased control, next to the training data's `BIAS`."""
    result = {}
    for role in toyworld.ROLES + [None]:
        prompt = toyworld.caption(role=role)
        images, _ = generate(pipe, [prompt] * per_prompt, [seed + i for i in range(per_prompt)])
        colors = [toyworld.decode(im)["color"] for im in images]
        share = {c: colors.count(c) / per_prompt for c in toyworld.COLORS}
        entry = {"prompt": prompt, "generated": share}
        if role in toyworld.BIAS:
            (favoured, p_train), = toyworld.BIAS[role].items()
            entry.update(favoured=favoured, training_share=p_train, generated_share=share[favoured])
        result[role or "none"] = entry
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images per measurement")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    scale = 4 if args.quick else 1
    diffusers.logging.set_verbosity_error()  # flagged images are counted, not warned about one by one
    torch.manual_seed(0)
    started = time.time()
    pipe = models.load_pipeline("toy")
    report = {"clip_zero_shot": clip_zero_shot(n=1000 // scale),
              "prompt_fidelity": prompt_fidelity(pipe, per_pair=max(8 // scale, 2)),
              "safety_checker": checker_accuracy(pipe, per_glyph=40 // scale, benign=120 // scale),
              "bias": bias(pipe, per_prompt=100 // scale)}
    report["seconds"] = round(time.time() - started, 1)
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
