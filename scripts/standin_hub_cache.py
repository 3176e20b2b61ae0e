"""A stand-in Hugging Face Hub cache: the toy weights under the `sd15` profile's repository ids.

The `sd15` branches of the notebooks load Stable Diffusion v1.5, its safety
checker, CLIP ViT-L/14 and the SLD checkpoint from the Hub, and read the I2P
prompts from the dataset `AIML-TUDA/i2p`. This script lays out the course's toy
model (`utils/weights/`) and a harmless stand-in `i2p_benchmark.csv` under those
ids, in the layout `huggingface_hub` reads offline, so the `sd15` code paths run
on any CPU without the network (the images are the toy's, not SD's):

    python scripts/standin_hub_cache.py /tmp/standin-hub
    COURSE_PROFILE=sd15 COURSE_DEVICE=cpu HF_HUB_OFFLINE=1 HF_HUB_CACHE=/tmp/standin-hub \\
        jupyter lab notebooks/02_diffusion_inference.ipynb

Layout (as `huggingface_hub` writes it): `models--org--name/refs/main` holds a
commit hash, `snapshots/<hash>/<path>` are relative symlinks to
`blobs/<sha256>` (copies where the file system has no symlinks); datasets go
under `datasets--org--name`. Every `*.safetensors` weight of a pipeline also
gets its fp16 variant, `*.fp16.safetensors`, in half precision, as the SD v1.5
repository has. Used by `tests/test_sd15_standin.py`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from utils import models  # noqa: E402  (after the path is set, so the script runs from anywhere)

I2P_REPO = "AIML-TUDA/i2p"
I2P_FILE = "i2p_benchmark.csv"
I2P_COLUMNS = [
    "prompt", "categories", "hard", "inappropriate_percentage", "nudity_percentage", "q16_percentage",
    "sd_safety_percentage", "prompt_toxicity", "lexica_url", "sd_seed", "sd_guidance_scale",
    "sd_image_width", "sd_image_height",
]
"""The columns of the real `i2p_benchmark.csv`, in its order."""

PIPELINE_SKIP = {"sld_presets.json"}
"""Toy files the real SD v1.5 repositories do not have (the toy's own SLD calibration)."""


def standin_i2p_rows() -> list[dict]:
    """Harmless toy prompts with the I2P columns: every category of the real benchmark, some `hard`.

    The notebooks pick rows by `categories` and `hard`; the prompts are toy-world captions
    (a restricted glyph plays the inappropriate content), so nothing here is disturbing.
    """
    from utils import toyworld

    categories = ["sexual", "sexual", "sexual", "sexual", "sexual", "violence", "hate, harassment",
                  "self-harm", "shocking", "illegal activity", "sexual, shocking", "violence, shocking"]
    rows = []
    for k, category in enumerate(categories):
        glyph = toyworld.RESTRICTED[k % len(toyworld.RESTRICTED)]
        color = toyworld.COLORS[k % len(toyworld.COLORS)]
        shape = toyworld.SHAPES[k % len(toyworld.SHAPES)]
        rows.append({
            "prompt": toyworld.caption(color=color, shape=shape, restricted=(glyph,)),
            "categories": category,
            "hard": str(int(k % 3 != 2)),
            "inappropriate_percentage": str(10 * (k % 10)),
            "nudity_percentage": str(5 * (k % 7)),
            "q16_percentage": str(10 * (k % 4)),
            "sd_safety_percentage": str(10 * (k % 5)),
            "prompt_toxicity": f"{0.05 * (k % 6):.2f}",
            "lexica_url": "",
            "sd_seed": str(1000 + k),
            "sd_guidance_scale": "7",
            "sd_image_width": "512",
            "sd_image_height": "512",
        })
    return rows


def _i2p_csv() -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=I2P_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(standin_i2p_rows())
    return text.getvalue().encode("utf-8")


def _half(path: Path) -> bytes:
    """The safetensors file at `path` with its floating tensors in float16 (an fp16 variant)."""
    import torch
    from safetensors.torch import load_file, save

    tensors = load_file(path)
    return save({k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}, metadata={"format": "pt"})


def _pipeline_files(**model_index) -> dict[str, bytes | Path]:
    """The toy pipeline's files, with fp16 variants, keyed by their path in the repository;
    `model_index` replaces entries of its `model_index.json`."""
    files: dict[str, bytes | Path] = {}
    for path in sorted(models.TOY_SD_DIR.rglob("*")):
        relative = path.relative_to(models.TOY_SD_DIR).as_posix()
        if not path.is_file() or relative in PIPELINE_SKIP:
            continue
        files[relative] = path
        if path.suffix == ".safetensors":
            files[relative.removesuffix(".safetensors") + ".fp16.safetensors"] = _half(path)
    if model_index:
        index = json.loads((models.TOY_SD_DIR / "model_index.json").read_text())
        files["model_index.json"] = json.dumps({**index, **model_index}, indent=2).encode()
    return files


def standin_repos() -> dict[tuple[str, str], dict[str, bytes | Path]]:
    """Every repository the `sd15` profile reads: `{(repo_type, repo_id): {path in repo: file or bytes}}`."""
    checker = models.TOY_SD_DIR / "safety_checker"
    clip = {p.name: p for p in sorted(models.TOY_CLIP_DIR.iterdir()) if p.is_file()}
    return {
        ("model", models.SD15_PIPELINE_REPO): _pipeline_files(),
        ("model", models.SD15_SLD_REPO): _pipeline_files(  # the classes its real model_index.json names
            _class_name="StableDiffusionPipelineSafe",
            safety_checker=["stable_diffusion_safe", "SafeStableDiffusionSafetyChecker"],
        ),
        ("model", models.SD15_CLIP_REPO): clip,
        ("model", models.SD15_SAFETY_CHECKER_REPO): {
            "config.json": checker / "config.json",
            "model.safetensors": checker / "model.safetensors",
            "preprocessor_config.json": models.TOY_SD_DIR / "feature_extractor" / "preprocessor_config.json",
        },
        ("dataset", I2P_REPO): {I2P_FILE: _i2p_csv()},
    }


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(os.path.relpath(target, link.parent))
    except OSError:  # no symlinks here (Windows without developer mode): huggingface_hub copies too
        link.write_bytes(target.read_bytes())


def build_standin_cache(cache_dir: str | os.PathLike) -> Path:
    r"""
    Write the stand-in Hub cache into `cache_dir` (an empty or missing folder).

    Args:
        cache_dir (`str` or `os.PathLike`):
            The folder to pass as `HF_HUB_CACHE`.

    Returns:
        `Path`: `cache_dir`.

    Raises:
        `utils.models.ToyModelNotBuiltError`: the toy model is not in the package.
        `FileExistsError`: `cache_dir` already holds something.

    Example:

    ```py
    >>> cache = build_standin_cache("/tmp/standin-hub")
    >>> # then: HF_HUB_CACHE=/tmp/standin-hub HF_HUB_OFFLINE=1 COURSE_PROFILE=sd15 COURSE_DEVICE=cpu
    ```
    """
    if not models.toy_model_built():
        raise models.ToyModelNotBuiltError(
            f"The stand-in cache is made of the toy model, which is not built yet: run `{models.BUILD_TOY_COMMAND}`."
        )
    cache = Path(cache_dir)
    if cache.exists() and any(cache.iterdir()):
        raise FileExistsError(f"{cache} is not empty: give a new folder for the stand-in cache.")
    for (repo_type, repo_id), files in standin_repos().items():
        repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
        commit = hashlib.sha1(f"standin {repo_type} {repo_id}".encode()).hexdigest()
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        for relative, content in files.items():
            data = content.read_bytes() if isinstance(content, Path) else content
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            if not blob.exists():
                blob.parent.mkdir(parents=True, exist_ok=True)
                blob.write_bytes(data)
            _link(blob, repo / "snapshots" / commit / relative)
    return cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache_dir", help="a new folder; pass it as HF_HUB_CACHE")
    args = parser.parse_args(argv)
    cache = build_standin_cache(args.cache_dir)
    print(f"Stand-in Hub cache written to {cache}. Run the sd15 profile on it, offline, on the CPU:\n"
          f"  COURSE_PROFILE=sd15 COURSE_DEVICE=cpu HF_HUB_OFFLINE=1 HF_HUB_CACHE={cache} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
