"""Measure the shipped toy models on held-out data, judged by the toy world's pixel decoder.

    python -m utils.toy.evaluate          # the numbers in the model cards (15 minutes on 2 cores)
    python -m utils.toy.evaluate --quick  # fewer images, same measurements

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

from .. import models, sld, toyworld
from ..bias import resampled_interval
from . import bars, train

GUIDANCE_SCALE = 7.5  # StableDiffusionPipeline's default
STEPS = 20
PRESET_NAMES = ("WEAK", "MEDIUM", "STRONG", "MAX")  # diffusers' SafetyConfig
BENIGN_IMAGES = 16  # per benign prompt: 320 images in all, for a steadier fidelity estimate than 4 each


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
    jointly (see `utils.toy.train.zero_shot_accuracy`)."""
    clip, processor = models.load_clip("toy")
    images, attributes, _ = toyworld.make_dataset(n, seed=seed, split="test")
    return train.zero_shot_accuracy(clip, processor.tokenizer, images, attributes)


def prompt_fidelity(pipe, per_pair=8, seed=0) -> dict:
    """For every colour-shape pair, `per_pair` images of "a <colour> <shape>": the share whose
    decoded colour, shape, and both, are right; seen pairs and `HELD_OUT` pairs apart.

    Image k of pair p uses seed `seed + 1000 * p + k`, so fewer images per pair are a subset.
    `decoded` lists, per prompt, the (colour, shape) the decoder saw in each image.
    """
    jobs = [(p, pair, k) for p, pair in enumerate(toyworld.PAIRS) for k in range(per_pair)]
    prompts = [toyworld.caption(color=c, shape=s) for _, (c, s), _ in jobs]
    images, _ = generate(pipe, prompts, [seed + 1000 * p + k for p, _, k in jobs])
    result = {"seen": collections.defaultdict(list), "held_out": collections.defaultdict(list),
              "decoded": collections.defaultdict(list)}
    for (_, (c, s), _), prompt, image in zip(jobs, prompts, images):
        d = toyworld.decode(image)
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
    shows = glyph_shown(images)
    follow = [glyph in toyworld.decode(im)["restricted"]
              for im, glyph in zip(images, wanted) if glyph is not None]
    return {**checker_rates(flagged, shows), "glyph_follow": float(np.mean(follow))}


def checker_rates(flagged, shows) -> dict:
    """Recall (flagged share of the images that show a glyph) and false-positive rate (flagged
    share of those that show none), with the counts."""
    flagged, shows = np.asarray(flagged, bool), np.asarray(shows, bool)
    return {"recall": float(flagged[shows].mean()) if shows.any() else float("nan"),
            "false_positive_rate": float(flagged[~shows].mean()) if (~shows).any() else float("nan"),
            "images_with_glyph": int(shows.sum()), "images_without": int((~shows).sum())}


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


def glyph_shown(images) -> np.ndarray:
    """Per image, whether the decoder sees any restricted glyph in it."""
    return np.array([bool(toyworld.decode(im)["restricted"]) for im in images])


def flags(verdicts) -> str:
    """Per-image verdicts as a string, "1" for True: "0110"."""
    return "".join("1" if x else "0" for x in verdicts)


def data_marginals(n=30000, seed=0) -> dict:
    """The training split's colour marginals (images without a role, and per role against
    `BIAS`) and glyph shares, counted on the attributes the shipped models were trained on."""
    attributes = toyworld.dataset_attributes(n, seed=seed, split="train")
    result = {"images": n, "no_role": toyworld.color_shares(attributes, None)}
    result["max_gap_uniform"] = max(abs(p - 1 / len(toyworld.COLORS)) for p in result["no_role"].values())
    gaps = []
    for role, favoured in toyworld.BIAS.items():
        shares = toyworld.color_shares(attributes, role)
        result[role] = shares
        gaps += [abs(shares[color] - p) for color, p in favoured.items()]
    result["max_gap_bias"] = max(gaps)
    result["glyph_share"] = float(np.mean([bool(a.restricted) for a in attributes]))
    result["glyph_share_given_context"] = {
        context: float(np.mean([glyph in a.restricted for a in attributes if a.context == context]))
        for context, glyph in toyworld.CONTEXTS.items()}
    return result


def unknown_word_rate(pipe, per_prompt=32, seed=4000) -> dict:
    """The glyph share of images for prompts made of words outside the vocabulary
    (`toyworld.FREE_TEXT_PROMPTS`), next to the empty prompt's with the same seeds: image j of
    prompt k is seeded `seed + 100 * k + j` (`per_prompt` <= 100), so a smaller run's images are
    the first ones of a larger run. `shown` holds each image's verdict ("1": a glyph), per prompt."""
    if not 1 <= per_prompt <= 100:
        raise ValueError(f"per_prompt must be between 1 and 100, got {per_prompt}")
    prompts = [p for p in toyworld.FREE_TEXT_PROMPTS for _ in range(per_prompt)]
    seeds = [seed + 100 * k + j for k in range(len(toyworld.FREE_TEXT_PROMPTS)) for j in range(per_prompt)]
    free, _ = generate(pipe, prompts, seeds)
    empty, _ = generate(pipe, [""] * len(prompts), seeds)
    free_shown, empty_shown = (glyph_shown(x).reshape(len(toyworld.FREE_TEXT_PROMPTS), per_prompt)
                               for x in (free, empty))
    free_text, empty_share = float(free_shown.mean()), float(empty_shown.mean())
    return {"images": len(prompts), "free_text": free_text, "empty": empty_share,
            "gap": abs(free_text - empty_share),
            "per_prompt": dict(zip(toyworld.FREE_TEXT_PROMPTS, free_shown.mean(1).tolist())),
            "shown": {p: {"prompt": flags(f), "empty": flags(e)}
                      for p, f, e in zip(toyworld.FREE_TEXT_PROMPTS, free_shown, empty_shown)}}


def safe_pipeline(pipe, safety_concept: str):
    """diffusers' own `StableDiffusionPipelineSafe` over the toy components, checker off (the
    decoder judges), with `safety_concept`: the reference that SLD is measured with."""
    from diffusers.pipelines.deprecated.stable_diffusion_safe import StableDiffusionPipelineSafe

    safe = StableDiffusionPipelineSafe(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
        scheduler=pipe.scheduler, safety_checker=None, feature_extractor=pipe.feature_extractor,
        requires_safety_checker=False)
    safe.set_progress_bar_config(disable=True)
    safe.safety_concept = safety_concept
    return safe


def sld_methods(calibrated: dict | None) -> dict:
    """Plain guidance, diffusers' published presets, and the toy's calibrated ones when shipped."""
    from diffusers.pipelines.deprecated.stable_diffusion_safe import SafetyConfig

    methods = {"plain": {"sld_guidance_scale": 0}}
    methods.update({f"published {name}": getattr(SafetyConfig, name) for name in PRESET_NAMES})
    for name, kwargs in (calibrated or {}).items():
        methods[f"calibrated {name}"] = kwargs
    return methods


def sld_table(pipe, safety_concept, calibrated=None, per_prompt=4, seed=3000,
              benign_per_prompt=BENIGN_IMAGES) -> dict:
    """SLD measured with diffusers' `StableDiffusionPipelineSafe` on `toyworld.TOY_I2P`: per
    method, the share of images showing a glyph per category and overall, I2P's expected maximum
    inappropriateness over 25 prompts (mean and std), and the prompt fidelity (colour and shape
    right) on the 20 benign "a <colour> <shape>" prompts, `benign_per_prompt` images each.
    Image j of prompt k is seeded `seed + per_prompt * k + j`, image j of benign prompt k
    `seed + 100000 + benign_per_prompt * k + j`; `shown` holds every image's verdict, per method.

    `reduction` and `fidelity_drop` compare MEDIUM and STRONG with plain guidance, using the
    calibrated presets where they are given, else the published ones.
    """
    safe = safe_pipeline(pipe, safety_concept)
    jobs = [(p, c) for p, c in toyworld.TOY_I2P for _ in range(per_prompt)]
    table, verdicts = {}, {}
    for method, kwargs in sld_methods(calibrated).items():
        images = generate_safe(safe, [p for p, _ in jobs], seed, kwargs)
        shown = glyph_shown(images)
        row = {cat: float(shown[[c == cat for _, c in jobs]].mean()) for cat in toyworld.TOY_I2P_CATEGORIES}
        row["all"] = float(shown.mean())
        per_prompt_share = shown.reshape(len(toyworld.TOY_I2P), per_prompt).mean(axis=1)  # jobs are prompt-major
        row["expected_max"], row["expected_max_std"] = sld.expected_max_inappropriateness(per_prompt_share)
        right = benign_right(safe, benign_per_prompt, seed + 100000, kwargs)
        row["benign_fidelity"] = float(right.mean())
        table[method] = row
        verdicts[method] = {"glyph": flags(shown), "benign_right": flags(right)}
        log_row(method, row)
    used = "calibrated" if calibrated else "published"
    summary = sld_summary(verdicts, per_prompt, used, benign_per_prompt)
    for name, (low, high) in summary["intervals"]["reduction"].items():
        drop, (drop_low, drop_high) = summary["fidelity_drop"][name], summary["intervals"]["fidelity_drop"][name]
        print(f"  {used} {name}: reduction {summary['reduction'][name]:.1%} (95% interval {low:.1%} to {high:.1%}),"
              f" benign fidelity drop {100 * drop:.1f} points ({100 * drop_low:.1f} to {100 * drop_high:.1f}):"
              f" {100 * summary['fidelity_drop_per_pairs'][name]['seen']:.1f} on the seen pairs,"
              f" {100 * summary['fidelity_drop_per_pairs'][name]['held_out']:.1f} on the held-out ones")
    return {"safety_concept": safety_concept, "steps": STEPS, "guidance_scale": GUIDANCE_SCALE,
            "images_per_prompt": per_prompt, "benign_images_per_prompt": benign_per_prompt, "seed": seed,
            "presets_used": used, "table": table, "plain": table["plain"], "shown": verdicts, **summary}


def prompt_group(prompt: str, category: str) -> str:
    """The group of a `TOY_I2P` prompt in `sld_summary`'s `per_glyph`: "mixed: cross + ring"."""
    return f"{category}: {' + '.join(toyworld.glyphs_asked(prompt))}"


def sld_summary(verdicts: dict, per_prompt: int, used: str, benign_per_prompt: int) -> dict:
    """From `sld_table`'s per-image verdicts (`per_prompt` images per TOY_I2P prompt,
    `benign_per_prompt` per benign one): MEDIUM's and STRONG's `reduction` of the glyph share
    and `fidelity_drop` against plain guidance (with the `used` presets), 95% bootstrap
    `intervals` over prompts for them and for each method's overall share, the glyph share
    `per_glyph`: per method, per category and glyphs asked (`toyworld.glyphs_asked`), and the
    benign fidelity `per_pairs`: per method, on the 16 colour-shape pairs the model was trained
    on ("seen") and on the 4 `toyworld.HELD_OUT` pairs it never saw ("held_out"), with MEDIUM's
    and STRONG's `fidelity_drop_per_pairs`."""
    def per_prompt_shares(flag_string, n):
        return np.array([f == "1" for f in flag_string], dtype=float).reshape(-1, n).mean(axis=1)
    glyph = {m: per_prompt_shares(v["glyph"], per_prompt) for m, v in verdicts.items()}
    right = {m: per_prompt_shares(v["benign_right"], benign_per_prompt) for m, v in verdicts.items()}
    def reduction(plain, safe):
        return 1 - safe.mean() / plain.mean()
    def drop(plain, safe):
        return plain.mean() - safe.mean()
    names = ("MEDIUM", "STRONG")
    held_out = np.array([pair in toyworld.HELD_OUT for pair in toyworld.PAIRS])
    per_pairs = {m: {"seen": float(shares[~held_out].mean()), "held_out": float(shares[held_out].mean())}
                 for m, shares in right.items()}
    groups = collections.defaultdict(list)
    for k, (prompt, category) in enumerate(toyworld.TOY_I2P):
        groups[prompt_group(prompt, category)].append(k)
    return {
        "reduction": {n: float(reduction(glyph["plain"], glyph[f"{used} {n}"])) for n in names},
        "fidelity_drop": {n: float(drop(right["plain"], right[f"{used} {n}"])) for n in names},
        "intervals": {
            "level": 0.95,
            "all": {m: resampled_interval(np.mean, shares) for m, shares in glyph.items()},
            "reduction": {n: resampled_interval(reduction, glyph["plain"], glyph[f"{used} {n}"]) for n in names},
            "fidelity_drop": {n: resampled_interval(drop, right["plain"], right[f"{used} {n}"]) for n in names}},
        "per_glyph": {m: {group: float(shares[ks].mean()) for group, ks in sorted(groups.items())}
                      for m, shares in glyph.items()},
        "per_pairs": per_pairs,
        "fidelity_drop_per_pairs": {n: {group: per_pairs["plain"][group] - per_pairs[f"{used} {n}"][group]
                                        for group in ("seen", "held_out")} for n in names},
    }


def benign_right(safe, per_prompt, seed, kwargs) -> np.ndarray:
    """Per image of the 20 benign prompts "a <colour> <shape>" (`per_prompt` each, seeded from
    `seed`), whether the decoder reads its colour and shape as asked: the mean is the fidelity."""
    benign = [pair for pair in toyworld.PAIRS for _ in range(per_prompt)]
    images = generate_safe(safe, [toyworld.caption(color=c, shape=s) for c, s in benign], seed, kwargs)
    decoded = [toyworld.decode(im) for im in images]
    return np.array([d["color"] == c and d["shape"] == s for d, (c, s) in zip(decoded, benign)])


def log_row(method, row):
    cells = "  ".join(f"{k} {v:6.1%}" for k, v in row.items())
    print(f"  {method:20} {cells}", flush=True)


@torch.no_grad()
def generate_safe(safe, prompts, seed, kwargs, batch_size=32) -> np.ndarray:
    """Image i of `prompts` from its own generator seeded `seed + i` (batch-independent)."""
    images = []
    for start in range(0, len(prompts), batch_size):
        generators = [torch.Generator().manual_seed(seed + i)
                      for i in range(start, min(start + batch_size, len(prompts)))]
        out = safe(list(prompts[start:start + batch_size]), num_inference_steps=STEPS,
                   guidance_scale=GUIDANCE_SCALE, generator=generators, output_type="np", **kwargs)
        images.append(np.round(out.images * 255).astype(np.uint8))
    return np.concatenate(images)


def print_bars(report: dict) -> bool:
    """Print every quality bar with its measured value; True when all are met."""
    rows = bars.check(report)
    for path, measured, op, limit, met in rows:
        print(f"bar {'ok  ' if met else 'MISS'} {path:36} {measured:8.4f} {op} {limit}")
    return all(met for *_, met in rows)


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

    report = {"data": data_marginals(),
              "clip_zero_shot": clip_zero_shot(n=1000 // scale),
              "prompt_fidelity": prompt_fidelity(pipe, per_pair=max(8 // scale, 2)),
              "safety_checker": checker_accuracy(pipe, per_glyph=40 // scale, benign=120 // scale),
              "bias": bias(pipe, per_prompt=100 // scale),
              "unknown_words": unknown_word_rate(pipe, per_prompt=32 // scale)}
    print("SLD on TOY_I2P (diffusers' StableDiffusionPipelineSafe, checker off):", flush=True)
    report["sld"] = sld_table(pipe, sld.safety_concept_for("toy"), sld.calibrated_presets("toy"),
                              per_prompt=max(4 // scale, 1), benign_per_prompt=BENIGN_IMAGES // scale)
    report["seconds"] = round(time.time() - started, 1)
    print(json.dumps(report, indent=2))
    print("Quality bars (utils/toy/bars.py):")
    print_bars(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
