"""benchmarks/run.py in its smoke mode (`--quick`): the table has every section and measurement,
and each ratio is computed from times taken in the same run. No assertion about speed."""

import importlib.util
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def before():
    """torch's thread count and diffusers' log level before the run."""
    from diffusers.utils import logging as diffusers_logging

    return torch.get_num_threads(), diffusers_logging.get_verbosity()


@pytest.fixture(scope="module")
def quick(bench, before):
    return bench.run(bench.parse_args(["--quick", "--threads", "1", "--device", "cpu"]))


def test_a_run_leaves_threads_and_logging_as_it_found_them(quick, before):
    from diffusers.utils import logging as diffusers_logging

    assert quick.machine["torch threads"] == 1
    assert (torch.get_num_threads(), diffusers_logging.get_verbosity()) == before


def test_per_image_change_names_the_image_that_changed_and_the_black_ones(bench):
    """What section 4 writes beside fp16's largest pixel change: which image changed, and whether
    the checker blacked one out on one side only."""
    reference = np.full((3, 2, 2, 3), 0.5)
    images = reference.copy()
    images[1] = 0.0  # blacked out on this side only
    images[2, 0, 0, 0] += 1e-3
    assert bench.per_image_change(images, reference) == "per image 0.0e+00 5.0e-01 1.0e-03; all-black images 1 and 0"


def test_quick_mode_is_small(bench):
    args = bench.parse_args(["--quick"])
    assert (args.steps, args.repeats, args.warmup, args.compile, args.course) == (2, 1, 0, False, False)
    assert bench.parse_args([]).steps == 20


def test_the_table_has_every_section_and_measurement(bench, quick):
    table = bench.format_table(quick)
    for key in ("1", "2", "4"):
        assert f"### {bench.SECTIONS[key]}" in table
    assert "### " + bench.SECTIONS["3"] not in table  # the course is timed only with --course
    names = {row.name for row in quick.rows}
    for expected in ("load, warm (load_pipeline again in the same process)", "seconds per image at batch 1",
                     "seconds per image at batch 4", "images per second at batch 4", "peak memory after generating",
                     "batch 4: UNet", "batch 4: VAE decode", "batch 4: text encoder (pipe.encode_prompt)",
                     "batch 4: safety checker (pipe.run_safety_checker)", "batch 4: scheduler step",
                     "floor: 4 images' FLOPs / best matmul rate", "4 images / floor",
                     "switch: classic attention (AttnProcessor) / as loaded", "hand-written loop / pipe(...)",
                     "utils.sld (MEDIUM) / plain guidance pipe(...)",
                     "utils.sld / StableDiffusionPipelineSafe (MEDIUM, no checker)",
                     "embeddings + utils.safety.decide / StableDiffusionSafetyChecker",
                     "utils.safety.decide / the checker's decision",
                     "UNet's achieved rate (its FLOPs / its time above)", "torch ops per UNet call"):
        assert expected in names
    assert sum(name.startswith("QUOTED, not measured") for name in names) == len(bench.QUOTED_GPU)
    assert bench.QUOTED_SOURCE in table  # the source is printed with the quoted numbers
    for key in ("CPU", "cores", "torch", "torch threads", "load average at start", "load average at end"):
        assert key in quick.machine
    assert quick.machine["torch threads"] == 1
    for row in quick.rows:
        assert row.values and all(math.isfinite(v) and v >= 0 for v in row.values), row
        assert f"| {row.name} |" in table


def test_ratios_come_from_times_of_the_same_run(quick):
    ratios = [row for row in quick.rows if row.parts is not None]
    assert len(ratios) >= 9
    for row in ratios:
        top, bottom = (quick.row(name).values for name in row.parts)
        assert len(top) == len(bottom) == len(row.values)
        assert row.values == pytest.approx([a / b for a, b in zip(top, bottom)])
        assert row.median == statistics.median(row.values)
    assert quick.row("4 images / floor").parts == ("generate 4 images (2 steps, guidance)",
                                                   "floor: 4 images' FLOPs / best matmul rate")
    flops = quick.row("FLOPs of 4 images, 2 steps").values[0] * 1e9
    best_rates = [max(pair) * 1e9 for pair in zip(*(quick.row(f"matmul rate, {n}x{n} float32").values
                                                     for n in (256, 512)))]
    assert quick.row("floor: 4 images' FLOPs / best matmul rate").values == pytest.approx(
        [flops / rate for rate in best_rates])


def test_the_course_helpers_give_the_same_images_and_verdicts(quick):
    # the loops it times are the same computation: the hand-written loop equals pipe(...), utils.sld
    # equals diffusers' StableDiffusionPipelineSafe, decide equals the checker
    assert "max pixel change vs pipe(...): 0.0e+00" in quick.row("utils.inference.sample, 4 images, 2 steps").note
    sld_note = quick.row("utils.sld.generate MEDIUM, no checker, 4 images, 2 steps").note
    assert float(sld_note.rsplit(": ", 1)[1]) <= 1e-4
    assert "same verdicts in all four: True" in quick.row("checker: utils.safety.decide only, 16 images").note
    assert quick.row("same seed twice: max pixel change").values == [0.0]
    assert quick.row("another seed: max pixel change").values[0] > 0.01


def test_a_ratio_row_divides_round_by_round(bench):
    results = bench.Results(settings={}, machine={})
    results.add("2", "a", [2.0, 3.0, 9.0], "s")
    results.add("2", "b", [1.0, 3.0, 3.0], "s")
    ratio = results.add_ratio("2", "a / b", "a", "b", target=1.5)
    assert ratio.values == [2.0, 1.0, 3.0] and ratio.median == 2.0 and ratio.met is False
    with pytest.raises(KeyError):
        results.add_ratio("2", "c / b", "c", "b")


def test_pytest_summary_names_failures_and_the_slowest(bench):
    stdout = """..F.
============================= slowest 3 durations ==============================
41.55s call     notebooks/02_diffusion_inference.ipynb::Cell 12
0.50s setup    tests/test_sld.py::test_presets
FAILED notebooks/02_diffusion_inference.ipynb::Cell 30 - nbval mismatch
==================== 1 failed, 55 passed in 52.15s ====================
"""
    assert bench.pytest_summary(stdout) == (
        "1 failed, 55 passed in 52.15s; FAILED notebooks/02_diffusion_inference.ipynb::Cell 30; "
        "slowest: 41.55s 02_diffusion_inference.ipynb::Cell 12, 0.50s test_sld.py::test_presets")
