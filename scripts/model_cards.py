"""Write the toy models' cards (their README.md) from the numbers that ship with the weights.

    python -m utils.train                                           # weights, training.json
    python -m utils.evaluate --json utils/weights/evaluation.json   # measured quality
    python scripts/model_cards.py                                   # the two model cards

The text of each card is in `scripts/model_cards/<model>.md`; every `@NAME@` in it is
filled from `utils/weights/training.json`, `evaluation.json` and the models' sizes, so a
card never states a number the files do not.
"""

import json
from pathlib import Path

from utils import models

TEMPLATES = Path(__file__).parent / "model_cards"


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def millions(module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header)] + rows
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def fields() -> dict:
    """Every `@NAME@` of the templates, with its value, from the shipped toy models."""
    training = json.loads((models.WEIGHTS_DIR / "training.json").read_text())
    evaluation = json.loads((models.WEIGHTS_DIR / "evaluation.json").read_text())
    pipe = models.load_pipeline("toy")
    clip, _ = models.load_clip("toy")
    fidelity, checker = evaluation["prompt_fidelity"], evaluation["safety_checker"]
    zero_shot, bias = evaluation["clip_zero_shot"], evaluation["bias"]
    seen, held_out = fidelity["seen"], fidelity["held_out"]
    return {
        "TE": millions(pipe.text_encoder), "UNET": millions(pipe.unet),
        "VAE": millions(pipe.vae), "SC": millions(pipe.safety_checker),
        "TEXT": millions(clip.text_model), "VISION": millions(clip.vision_model),
        "MIN": f"{sum(training['training_minutes'].values()):.0f}",
        "CLIPSTEPS": str(training["clip_steps"]), "VAESTEPS": str(training["vae_steps"]),
        "UNETSTEPS": str(training["unet_steps"]),
        "DOC": pct(bias["doctor"]["generated_share"]), "CHEF": pct(bias["chef"]["generated_share"]),
        "NONE": ", ".join(f"{c} {pct(p)}" for c, p in bias["none"]["generated"].items()),
        "ZS_TABLE": table(["protocol", "colour", "shape", "bar"], [
            ['per attribute ("a red shape", ...; "a circle", ...)',
             pct(zero_shot["color"]), pct(zero_shot["shape"]), "95% / 90%"],
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
            ["colour right, seen colour-shape pairs (16 pairs x 8 images)", pct(seen["color"]), "90%"],
            ["shape right, seen pairs", pct(seen["shape"]), "80%"],
            ["colour and shape right, seen pairs", pct(seen["both"]), ""],
            ["colour right, held-out pairs (4 pairs x 8 images)", pct(held_out["color"]), ""],
            ["shape right, held-out pairs", pct(held_out["shape"]), ""],
            ["colour and shape right, held-out pairs", pct(held_out["both"]), "70%"],
            [f"safety checker recall (generated images that show a glyph: {checker['images_with_glyph']})",
             pct(checker["recall"]), "95%"],
            [f"safety checker false-positive rate (images that show none: {checker['images_without']})",
             pct(checker["false_positive_rate"]), "5%"],
            ["glyph prompts whose image shows the glyph", pct(checker["glyph_follow"]), ""],
            ["CLIP zero-shot colour / shape, per attribute (1,000 held-out images)",
             f"{pct(zero_shot['color'])} / {pct(zero_shot['shape'])}", "95% / 90%"],
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


def main():
    values = fields()
    for name in ("toy-sd", "toy-clip"):
        (models.WEIGHTS_DIR / name / "README.md").write_text(render(name, values))
        print("wrote", models.WEIGHTS_DIR / name / "README.md")


if __name__ == "__main__":
    main()
