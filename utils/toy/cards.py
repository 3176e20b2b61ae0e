"""Write the toy models' cards (their README.md) from the numbers that ship with the weights.

    python -m utils.toy.train                                           # weights, training.json
    python -m utils.toy.evaluate --json utils/weights/evaluation.json   # measured quality
    python -m utils.toy.calibrate_sld                                   # sld_presets.json
    python -m utils.toy.cards                                           # the two model cards

The text of each card is in `utils/toy/card_templates/<model>.md`; every `@NAME@` in it is
filled from `utils/weights/training.json`, `evaluation.json` and the models' sizes, so a
card never states a number the files do not.
"""

import collections
import json
from pathlib import Path

from .. import models, toyworld
from . import bars, evaluate

TEMPLATES = Path(__file__).parent / "card_templates"


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def millions(module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header)] + rows
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def bar(path: str, points: bool = False) -> str:
    """The bar for `evaluation.json`'s number at `path`, as the cards print it (a difference
    of two shares in `points`)."""
    op, limit = bars.BARS[path]
    return f"{'≥' if op == '>=' else '≤'} {f'{100 * limit:.1f} points' if points else pct(limit)}"


def named_bar(path: str, points: bool = False) -> str:
    """`bar(path)`, said in a sentence: "bar ≥ 65.0%"."""
    return "bar " + bar(path, points)


def presets_table(presets_file: dict | None) -> str:
    """The published SLD presets beside the toy's calibrated ones."""
    from diffusers.pipelines.deprecated.stable_diffusion_safe import SafetyConfig

    keys = ["sld_warmup_steps", "sld_guidance_scale", "sld_threshold", "sld_momentum_scale", "sld_mom_beta"]
    rows = []
    for name in ("WEAK", "MEDIUM", "STRONG", "MAX"):
        rows.append([f"{name} (published)"] + [f"{getattr(SafetyConfig, name)[k]:g}" for k in keys])
        if presets_file:
            rows.append([f"{name} (toy, calibrated)"] + [f"{presets_file['presets'][name][k]:g}" for k in keys])
    return table(["preset"] + [f"`{k}`" for k in keys], rows)


def spoken(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def sld_result(sld: dict) -> str:
    """The SLD bars in words, each with its 95% interval over prompts, and which
    of them the interval leaves undecided (it holds values on both sides of the limit)."""
    said, undecided = {}, []
    for measure, name, points in [("reduction", "MEDIUM", False), ("reduction", "STRONG", False),
                                  ("fidelity_drop", "MEDIUM", True)]:
        path = f"sld.{measure}.{name}"
        value, (low, high) = sld[measure][name], sld["intervals"][measure][name]
        unit = " points" if points else "%"
        said[path] = (f"{100 * value:.1f}{unit} (95% interval {100 * low:.1f} to {100 * high:.1f}{unit}; "
                      f"{named_bar(path, points)})")
        if bars.meets(path, low) != bars.meets(path, high):
            undecided.append(f"`{path}`")
    text = (f"With the {sld['presets_used']} presets, MEDIUM lowers the share of images showing a glyph by "
            f"{said['sld.reduction.MEDIUM']} and STRONG by {said['sld.reduction.STRONG']}, relative to plain "
            f"guidance; MEDIUM costs {said['sld.fidelity_drop.MEDIUM']} of benign prompt fidelity. The intervals "
            f"resample the {len(toyworld.TOY_I2P)} prompts (and the {len(toyworld.PAIRS)} benign ones), because "
            f"the images of one prompt are not independent")
    if undecided:
        text += (f". The interval{'s' if len(undecided) > 1 else ''} of {spoken(undecided)} "
                 f"hold{'' if len(undecided) > 1 else 's'} values on both sides of {'their limits' if len(undecided) > 1 else 'its limit'}: "
                 f"on this many prompts, the measurement cannot tell on which side the model lies")
    return text


def sld_glyph_note(sld: dict) -> str:
    """Which glyph MEDIUM leaves most often, on the explicit prompts, in words."""
    row = sld["per_glyph"][f"{sld['presets_used']} MEDIUM"]
    kept = sorted({(row[evaluate.prompt_group(p, c)], toyworld.glyphs_asked(p)[0])
                   for p, c in toyworld.TOY_I2P if c == "explicit"}, reverse=True)
    return (f"Under {sld['presets_used']} MEDIUM, the explicit prompts still show a glyph in "
            + spoken([f"{pct(share)} ({glyph})" for share, glyph in kept]) + " of their images")


def sld_pairs_note(sld: dict) -> str:
    """Where MEDIUM's and STRONG's benign fidelity cost falls, the pairs seen in training or the
    held-out ones, in words."""
    plain, used, drop = sld["per_pairs"]["plain"], sld["presets_used"], sld["fidelity_drop_per_pairs"]
    medium, strong = sld["per_pairs"][f"{used} MEDIUM"], sld["per_pairs"][f"{used} STRONG"]
    seen, held_out = len(toyworld.PAIRS) - len(toyworld.HELD_OUT), len(toyworld.HELD_OUT)
    return (f"With plain guidance, {pct(plain['seen'])} of the benign images of the {seen} colour-shape pairs the "
            f"model was trained on are right, and {pct(plain['held_out'])} of those of the {held_out} held-out pairs "
            f"it never saw; under {used} MEDIUM, {pct(medium['seen'])} ({100 * drop['MEDIUM']['seen']:.1f} points "
            f"fewer) and {pct(medium['held_out'])} ({100 * drop['MEDIUM']['held_out']:.1f} points fewer); under "
            f"{used} STRONG, {pct(strong['seen'])} ({100 * drop['STRONG']['seen']:.1f} points fewer) and "
            f"{pct(strong['held_out'])} ({100 * drop['STRONG']['held_out']:.1f} points fewer)")


def sld_glyphs(sld: dict) -> str:
    """The glyph share per method and per group of prompts (category and glyphs asked)."""
    sizes = collections.Counter(evaluate.prompt_group(p, c) for p, c in toyworld.TOY_I2P)
    groups = list(sld["per_glyph"]["plain"])
    return table(["method"] + [f"{g} ({sizes[g]})" for g in groups],
                 [[m] + [pct(row[g]) for g in groups] for m, row in sld["per_glyph"].items()])


def fields() -> dict:
    """Every `@NAME@` of the templates, with its value, from the shipped toy models."""
    training = json.loads((models.WEIGHTS_DIR / "training.json").read_text())
    evaluation = json.loads((models.WEIGHTS_DIR / "evaluation.json").read_text())
    pipe = models.load_pipeline("toy")
    clip, _ = models.load_clip("toy")
    fidelity, checker = evaluation["prompt_fidelity"], evaluation["safety_checker"]
    zero_shot, bias = evaluation["clip_zero_shot"], evaluation["bias"]
    seen, held_out = fidelity["seen"], fidelity["held_out"]
    data, unknown, sld = evaluation["data"], evaluation["unknown_words"], evaluation["sld"]
    presets_path = models.TOY_SD_DIR / "sld_presets.json"
    presets_file = json.loads(presets_path.read_text()) if presets_path.exists() else None
    categories = ["explicit", "implicit", "mixed", "all"]
    return {
        "TOKENS": f"{len(pipe.tokenizer)} tokens, {pipe.tokenizer.model_max_length} positions",
        "DATA_TABLE": table(["images of the training split (30,000, seed 0)", "measured", "intended"], [
            ["colour of images without a role",
             ", ".join(f"{c} {pct(p)}" for c, p in data["no_role"].items()),
             f"{pct(1 / len(toyworld.COLORS))} each"],
            *[[f'"{role}": {c}', pct(data[role][c]), pct(p)]
              for role, favoured in toyworld.BIAS.items() for c, p in favoured.items()],
            ["largest gap to the intended shares", pct(max(data["max_gap_uniform"], data["max_gap_bias"])),
             bar("data.max_gap_uniform")],
            ["images with a glyph", pct(data["glyph_share"]), ""]] + [
            [f'glyph "{g}" given the context "{c}"', pct(data["glyph_share_given_context"][c]),
             pct(toyworld.P_CONTEXT_GLYPH)]
            for c, g in toyworld.CONTEXTS.items()]),
        "UNKNOWN": (f"{pct(unknown['free_text'])} of {unknown['images']} images of prompts made of words "
                    f"the model does not know show a glyph, against {pct(unknown['empty'])} for the empty "
                    f"prompt (gap {pct(unknown['gap'])}; {named_bar('unknown_words.gap')})"),
        "UNKNOWN_DURING": pct(unknown["per_prompt"]["a lighthouse during a storm"]),
        "UNKNOWN_RANGE": ", ".join(f'"{prompt}" {pct(share)}' for prompt, share in unknown["per_prompt"].items()),
        "SLD_CONCEPT": sld["safety_concept"],
        "SLD_IMAGES": str(sld["images_per_prompt"]),
        "SLD_BENIGN_IMAGES": str(sld["benign_images_per_prompt"]),
        "SLD_TABLE": table(["method"] + [f"glyph shown: {c}" for c in categories]
                           + ["expected max. (25 prompts)", "benign fidelity"],
                           [[m] + [pct(row[c]) for c in categories]
                            + [f"{row['expected_max']:.2f} ± {row['expected_max_std']:.2f}", pct(row["benign_fidelity"])]
                            for m, row in sld["table"].items()]),
        "SLD_RESULT": sld_result(sld),
        "SLD_PAIRS": sld_pairs_note(sld),
        "SLD_GLYPHS": sld_glyphs(sld),
        "SLD_GLYPH_NOTE": sld_glyph_note(sld),
        "PRESETS_TABLE": presets_table(presets_file),
        "PRESETS_RULE": presets_file["rule"] if presets_file else "No calibrated presets are shipped.",
        "TE": millions(pipe.text_encoder), "UNET": millions(pipe.unet),
        "VAE": millions(pipe.vae), "SC": millions(pipe.safety_checker),
        "TEXT": millions(clip.text_model), "VISION": millions(clip.vision_model),
        "MIN": f"{sum(training['training_minutes'].values()):.0f}",
        "CLIPSTEPS": str(training["clip_steps"]), "VAESTEPS": str(training["vae_steps"]),
        "UNETSTEPS": str(training["unet_steps"]),
        "REFINESTEPS": str(training["unet_refine"]["steps"]), "REFINELR": f"{training['unet_refine']['lr']:g}",
        "PEMPTY": pct(training["unet_captions"]["empty"]),
        "PUNKNOWNONLY": pct(training["unet_captions"]["unknown_words_only"]),
        "PINSERTED": pct(training["unet_captions"]["unknown_words_inserted"]),
        "DOC": pct(bias["doctor"]["generated_share"]), "CHEF": pct(bias["chef"]["generated_share"]),
        "NONE": ", ".join(f"{c} {pct(p)}" for c, p in bias["none"]["generated"].items()),
        "ZS_TABLE": table(["protocol", "colour", "shape", "bar"], [
            ['per attribute ("a red shape", ...; "a circle", ...)',
             pct(zero_shot["color"]), pct(zero_shot["shape"]),
             f"{bar('clip_zero_shot.color')} / {bar('clip_zero_shot.shape')}"],
            ["per attribute, only the images of held-out colour-shape pairs",
             pct(zero_shot["held_out_pairs"]["color"]), pct(zero_shot["held_out_pairs"]["shape"]), ""],
            ['joint (best of "a red circle", ..., "a purple diamond")',
             pct(zero_shot["joint"]["color"]), pct(zero_shot["joint"]["shape"]), ""]]),
        "CHECKER_TABLE": table(
            ["concept", "index", "prompt", "threshold",
             "recall / false positives on 3,000 held-out data set images"],
            [[f"{name} ({row['kind'].replace('_', ' ')})", str(row["index"]), f'"{row["prompt"]}"',
              f"{row['threshold']:.4f}", f"{pct(row['recall'])} / {pct(row['false_positive_rate'])}"]
             for name, row in training["safety_checker"].items()]),
        "EVAL_TABLE": table(["measurement", "result", "bar"], [
            ["colour right, seen colour-shape pairs (16 pairs x 8 images)", pct(seen["color"]),
             bar("prompt_fidelity.seen.color")],
            ["shape right, seen pairs", pct(seen["shape"]), bar("prompt_fidelity.seen.shape")],
            ["colour and shape right, seen pairs", pct(seen["both"]), ""],
            ["colour right, held-out pairs (4 pairs x 8 images)", pct(held_out["color"]), ""],
            ["shape right, held-out pairs", pct(held_out["shape"]), ""],
            ["colour and shape right, held-out pairs", pct(held_out["both"]), bar("prompt_fidelity.held_out.both")],
            [f"safety checker recall (generated images that show a glyph: {checker['images_with_glyph']})",
             pct(checker["recall"]), bar("safety_checker.recall")],
            [f"safety checker false-positive rate (images that show none: {checker['images_without']})",
             pct(checker["false_positive_rate"]), bar("safety_checker.false_positive_rate")],
            ["glyph prompts whose image shows the glyph", pct(checker["glyph_follow"]), ""],
            ["CLIP zero-shot colour / shape, per attribute (1,000 held-out images)",
             f"{pct(zero_shot['color'])} / {pct(zero_shot['shape'])}",
             f"{bar('clip_zero_shot.color')} / {bar('clip_zero_shot.shape')}"],
            ["CLIP zero-shot colour / shape, joint over the 20 colour-shape captions",
             f"{pct(zero_shot['joint']['color'])} / {pct(zero_shot['joint']['shape'])}", ""]]),
    }


def render(name: str, values: dict) -> str:
    text = (TEMPLATES / f"{name}.md").read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    if "@" in text:
        raise ValueError(f"{name}: a field of the template has no value: {text[text.index('@'):][:40]!r}")
    return text


CARDS = {"toy-sd": models.TOY_SD_DIR / "README.md", "toy-clip": models.TOY_CLIP_DIR / "README.md",
         "DATA_CARD": models.WEIGHTS_DIR / "DATA_CARD.md"}


def main():
    values = fields()
    for name, path in CARDS.items():
        path.write_text(render(name, values))
        print("wrote", path)


if __name__ == "__main__":
    main()
