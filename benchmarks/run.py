"""What the course costs to run, as numbers anyone can reproduce (issue 15).

    python benchmarks/run.py                   # the table: sections 1, 2 and 4 (a few minutes on 2 CPU cores)
    python benchmarks/run.py --threads 1       # set torch's CPU threads (always reported)
    python benchmarks/run.py --course          # section 3 only: every notebook under nbval, the unit tests,
                                               # a fresh clone to a passing run (expensive: tens of minutes)
    python benchmarks/run.py --quick           # smoke mode: 2 steps, 1 repeat, no subprocesses (seconds)
    python benchmarks/run.py --json out.json   # also write every sample

1. The toy pipeline against the physical limit: load time (cold, in a fresh Python, and
   warm), seconds per image at batch 1 and 4 (20 steps, guidance 7.5), images per second,
   peak memory; where the time goes (each part timed by wrapping its method); the floor, the
   FLOPs of one generation (`torch.utils.flop_counter.FlopCounterMode`) divided by this
   machine's best measured matmul rate; and what each speed switch changes, timed in the
   same run, with the largest pixel change it causes.
2. The course's overheads as ratios of times taken in the same rounds: the hand-written loop
   of notebook 02 (`utils.inference.sample`) against `pipe(...)`, `utils.sld` against plain
   guidance and against diffusers' `StableDiffusionPipelineSafe`, and `utils.safety.decide`
   against `StableDiffusionSafetyChecker` on the same batch.
3. The course itself (`--course`): the wall time of every notebook under nbval, of the unit
   tests, and of a fresh clone to a passing run, in a clone of the last commit.
4. GPU: on CUDA, sections 1-2 run there, plus fp16 against fp32 and the memory plan's effect
   on peak memory. Always printed: SD v1.5 figures quoted from diffusers' documentation.

Times are medians over `--repeats` rounds, with min and max. Variants compared with each
other run in the same rounds, one after the other, their order rotating from round to round,
so that a change in the machine's load hits them alike; a ratio is the median of the
per-round ratios. Nothing here asserts a speed: the numbers depend on the machine and on
what else runs on it (the load average is printed at the start and the end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/run.py` puts benchmarks/ on the path, not the repository
    sys.path.insert(0, str(ROOT))

from utils import gpu, inference, models, safety, sld  # noqa: E402

PROMPTS = ["a small red circle", "a large blue square", "a green diamond on a white background",
           "a purple square on a black background"]
GUIDANCE_SCALE = 7.5
CHECKER_BATCH = 16  # images the safety checker judges at once in section 2

SECTIONS = {
    "1": "1. Toy pipeline against the physical limit",
    "2": "2. Overheads, as ratios measured in the same run",
    "3": "3. The course itself",
    "4": "4. GPU",
}

# SD v1.5 text-to-image, 512x512, fp16, 50 steps, PyTorch 2.0 SDPA, iterations per second;
# from the benchmark tables of diffusers' "Accelerated PyTorch 2.0 support" page (diffusers 0.17).
QUOTED_SOURCE = ("https://github.com/huggingface/diffusers/blob/07dc8feb1d54c93adb9a7443a48a6741e1dbf43f/"
                 "docs/source/en/optimization/torch2.0.mdx (also https://huggingface.co/docs/diffusers/v0.17.0/"
                 "en/optimization/torch2.0)")
QUOTED_GPU = [  # (GPU, batch size, torch.compile, iterations per second)
    ("T4", 1, False, 6.9), ("T4", 1, True, 7.3), ("T4", 4, False, 1.79), ("T4", 4, True, 2.03),
    ("A100", 1, False, 21.66), ("A100", 1, True, 44.03), ("A100", 4, False, 11.6), ("A100", 4, True, 14.62),
]
QUOTED_STEPS = 50


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a measurement's samples (seconds, bytes, a ratio...) and what it is."""

    section: str
    name: str
    values: list[float]
    unit: str
    target: float | None = None  # an upper bound the issue sets
    note: str = ""
    parts: tuple[str, str] | None = None  # for a ratio: the rows (numerator, denominator) it divides, round by round

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.median <= self.target


@dataclass
class Results:
    settings: dict
    machine: dict
    rows: list[Row] = field(default_factory=list)
    progress: bool = False  # print each row to stderr as it is measured

    def add(self, section, name, values, unit, **kwargs) -> Row:
        values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
        row = Row(section, name, values, unit, **kwargs)
        self.rows.append(row)
        if self.progress:
            print(f"  {name}: {_number(row.median)} {unit}", file=sys.stderr, flush=True)
        return row

    def row(self, name: str) -> Row:
        matches = [row for row in self.rows if row.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} rows named {name!r}")
        return matches[0]

    def add_ratio(self, section, name, numerator: str, denominator: str, target=None, note=""):
        """A ratio of two timed rows of this run, round by round (they were timed in the same rounds)."""
        top, bottom = self.row(numerator).values, self.row(denominator).values
        return self.add(section, name, [a / b for a, b in zip(top, bottom)], "x", target=target, note=note,
                        parts=(numerator, denominator))


def _number(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 1000 or value == int(value) and abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def format_table(results: Results) -> str:
    """The results as Markdown: the machine, then one table per section."""
    lines = ["Machine: " + "; ".join(f"{k} {v}" for k, v in results.machine.items()),
             "Settings: " + "; ".join(f"{k} {v}" for k, v in results.settings.items())]
    for key, title in SECTIONS.items():
        rows = [row for row in results.rows if row.section == key]
        if not rows:
            continue
        lines += ["", f"### {title}", "", "| measurement | median | min | max | unit | target | note |",
                  "| --- | ---: | ---: | ---: | --- | --- | --- |"]
        for row in rows:
            target = "" if row.target is None else f"<= {row.target:g} ({'met' if row.met else 'missed'})"
            lines.append(f"| {row.name} | {_number(row.median)} | {_number(min(row.values))} | "
                         f"{_number(max(row.values))} | {row.unit} | {target} | {row.note} |")
        if any(row.name.startswith("QUOTED") for row in rows):
            lines += ["", f"QUOTED rows are copied from diffusers' documentation, not measured here: {QUOTED_SOURCE}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


def clock(fn, device):
    """Run `fn()` once; return (seconds, what it returned), waiting for the GPU before and after."""
    gpu.synchronize(device)
    start = time.perf_counter()
    out = fn()
    gpu.synchronize(device)
    return time.perf_counter() - start, out


def interleave(variants: dict, repeats: int, device, warmup: int = 1, too_slow: float | None = None):
    r"""
    Time several variants in the same rounds: each round runs every variant once, in an order
    that rotates from round to round.

    Args:
        variants (`dict[str, callable]`): name -> a function of no arguments. The first is the reference.
        repeats (`int`): rounds.
        device: what to synchronise.
        warmup (`int`): untimed calls of each variant first.
        too_slow (`float`, *optional*): a variant whose warm-up call takes more than this many
            times the reference's is timed only once (its warm-up), not in the rounds.

    Returns:
        `tuple[dict, dict, dict]`: name -> seconds per round; name -> what its last call returned;
        name -> a note (for variants left out of the rounds).
    """
    names, outputs, notes = list(variants), {}, {}
    first = {}
    for name in names:
        for _ in range(warmup):
            first[name], outputs[name] = clock(variants[name], device)
    times = {name: [] for name in names}
    if too_slow is not None and warmup:
        for name in names[1:]:
            if first[name] > too_slow * first[names[0]]:
                times[name] = [first[name]]
                notes[name] = (f"one call only: it took {first[name] / first[names[0]]:.0f}x the reference's, "
                               "so it was left out of the rounds")
    in_rounds = [name for name in names if name not in notes]
    for r in range(repeats):
        shift = r % len(in_rounds)
        for name in in_rounds[shift:] + in_rounds[:shift]:
            seconds, outputs[name] = clock(variants[name], device)
            times[name].append(seconds)
    return times, outputs, notes


def max_pixel_change(images, reference) -> float:
    """The largest absolute difference between two image batches, in [0, 1] units."""
    return float(np.abs(np.asarray(images, dtype=np.float64) - np.asarray(reference, dtype=np.float64)).max())


def per_image_change(images, reference) -> str:
    """Each image's largest pixel change, and how many images of each batch are all black (what
    the safety checker returns for a flagged image): tells one image going another way, or one
    flagged on one side only, from a change in every image."""
    images, reference = (np.asarray(x, dtype=np.float64) for x in (images, reference))
    changes = np.abs(images - reference).reshape(len(images), -1).max(axis=1)
    black = [int((x.reshape(len(x), -1).max(axis=1) == 0).sum()) for x in (images, reference)]
    return f"per image {' '.join(f'{c:.1e}' for c in changes)}; all-black images {black[0]} and {black[1]}"


# --------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg()) + " (1/5/15 min)"
    except (AttributeError, OSError):  # Windows
        return "n/a"


def machine_info(device) -> dict:
    info = {
        "CPU": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "diffusers": metadata.version("diffusers"),
        "transformers": metadata.version("transformers"),
        "python": platform.python_version(),
        "torch threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "device": str(device),
        "load average at start": load_average(),
    }
    if torch.device(device).type == "cuda":
        info["GPU"] = torch.cuda.get_device_name(device)
    return info


# --------------------------------------------------------------------------
# Section 1: the toy pipeline
# --------------------------------------------------------------------------


def generate(pipe, batch: int, steps: int, seed: int = 0):
    """`batch` images of the first prompts, with guidance, as a NumPy array (B, H, W, 3) in [0, 1]."""
    return pipe(PROMPTS[:batch], num_inference_steps=steps, guidance_scale=GUIDANCE_SCALE,
                generator=gpu.make_generator(seed), output_type="np").images


def cold_load_seconds(device) -> float:
    """Wall time of a fresh Python that imports the course and loads the toy pipeline."""
    code = f"from utils import models; models.load_pipeline('toy', device={str(device)!r})"
    env = dict(os.environ, COURSE_PROFILE="toy", HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(torch.get_num_threads()))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


@contextmanager
def stopwatches(pipe, device):
    r"""
    Time the parts of `pipe(...)` by wrapping the methods it calls; yields `dict` part -> seconds
    spent in it (summed over calls). Restores the methods afterwards.
    """
    parts = {"text encoder (pipe.encode_prompt)": (pipe, "encode_prompt"), "UNet": (pipe.unet, "forward"),
             "scheduler step": (pipe.scheduler, "step"), "VAE decode": (pipe.vae, "decode"),
             "safety checker (pipe.run_safety_checker)": (pipe, "run_safety_checker")}
    spent = dict.fromkeys(parts, 0.0)

    def wrap(name, method):
        def timed(*args, **kwargs):
            seconds, out = clock(lambda: method(*args, **kwargs), device)
            spent[name] += seconds
            return out
        return timed

    for name, (owner, attribute) in parts.items():
        object.__setattr__(owner, attribute, wrap(name, getattr(owner, attribute)))
    try:
        yield spent
    finally:
        for owner, attribute in parts.values():
            object.__delattr__(owner, attribute)  # the class's method shows through again


def flops_of(fn) -> tuple[int, dict]:
    """FLOPs of one call of `fn` (matmuls, convolutions, attention), in total and per top-level model."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    names = {"UNet2DConditionModel": "UNet", "Decoder": "VAE decoder", "CLIPTextModel": "text encoder",
             "StableDiffusionSafetyChecker": "safety checker"}
    per_module = {names.get(name, name): sum(ops.values()) for name, ops in counter.get_flop_counts().items()
                  if name != "Global" and "." not in name}
    return counter.get_total_flops(), per_module


def ops_per_call(fn) -> int:
    """How many torch operations `fn()` calls (top-level aten ops: not the ones they call themselves)."""
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for event in prof.events() if event.name.startswith("aten::")
               and (event.cpu_parent is None or not event.cpu_parent.name.startswith("aten::")))


def tiny_op_seconds(device, calls: int = 10000, repeats: int = 5) -> list[float]:
    """Seconds per call of a torch op on one element: the cost of dispatching an op, not of computing it."""
    x = torch.zeros(1, device=device)
    samples = []
    for _ in range(repeats):
        seconds, _ = clock(lambda: [torch.add(x, 1) for _ in range(calls)], device)
        samples.append(seconds / calls)
    return samples


MATMUL_FLOPS = 2**31
"""FLOPs of one `matmuls` sample (about 2.1 GFLOP: as much as one UNet call at batch 8)."""


def matmuls(size: int, device, dtype=torch.float32):
    """A function that multiplies two (size x size) matrices until it has done `MATMUL_FLOPS` FLOPs:
    its rate is `MATMUL_FLOPS / seconds`. `size` must be a power of 2, from 2 to 1024."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    calls = MATMUL_FLOPS // (2 * size**3)
    return lambda: [torch.mm(a, b, out=out) for _ in range(calls)]


def pipeline_section(results: Results, pipe, args, device):
    s, steps, repeats = "1", args.steps, args.repeats
    with torch.no_grad():
        if not args.quick:
            results.add(s, "load, cold (fresh Python: imports + load_pipeline)",
                        [cold_load_seconds(device) for _ in range(min(repeats, 3))], "s")
        warm = [clock(lambda: models.load_pipeline("toy", device=device), device)[0] for _ in range(min(repeats, 3))]
        results.add(s, "load, warm (load_pipeline again in the same process)", warm, "s")
        if torch.device(device).type == "cpu":
            results.add(s, "peak memory after loading (process peak RSS)", gpu.peak_memory(device) / 2**20, "MiB")

        # The floor's two halves: FLOPs (counted once: they do not vary) and the matmul rate,
        # sampled in the same rounds as the generations, so that both see the same load.
        total_flops, per_model = flops_of(lambda: generate(pipe, 4, steps))
        unet_flops, _ = flops_of(unet_call(pipe, device))
        sizes = (256, 512) if args.quick else (256, 1024)
        variants = {"batch 1": lambda: generate(pipe, 1, steps), "batch 4": lambda: generate(pipe, 4, steps)}
        variants.update({size: matmuls(size, device) for size in sizes})
        gpu.reset_peak_memory(device)
        times, _, _ = interleave(variants, repeats, device, warmup=args.warmup)
        memory_note = ("torch.cuda.max_memory_allocated" if torch.device(device).type == "cuda"
                       else "process peak RSS since start (ru_maxrss): models and libraries included")
        results.add(s, "peak memory after generating", gpu.peak_memory(device) / 2**20, "MiB", note=memory_note)
        for batch in (1, 4):
            seconds = times[f"batch {batch}"]
            results.add(s, f"generate {batch} image{'s' * (batch > 1)} ({steps} steps, guidance)", seconds, "s")
            results.add(s, f"seconds per image at batch {batch}", [t / batch for t in seconds], "s/image")
            results.add(s, f"images per second at batch {batch}", [batch / t for t in seconds], "images/s")
        results.add(s, "FLOPs of one UNet call at batch 8 (4 images x guidance)", unet_flops / 1e9, "GFLOP")
        results.add(s, f"FLOPs of 4 images, {steps} steps", total_flops / 1e9, "GFLOP",
                    note=", ".join(f"{name} {flops / 1e9:.2f}" for name, flops in sorted(
                        per_model.items(), key=lambda item: -item[1]) if flops >= 0.01 * total_flops))
        rates = {size: [MATMUL_FLOPS / t for t in times[size]] for size in sizes}
        for size in sizes:
            results.add(s, f"matmul rate, {size}x{size} float32", [r / 1e9 for r in rates[size]], "GFLOP/s")
        best = [max(round_rates) for round_rates in zip(*rates.values())]
        results.add(s, "floor: 4 images' FLOPs / best matmul rate", [total_flops / r for r in best], "s",
                    note="per round: the best of the round's matmul rates")
        results.add_ratio(s, "4 images / floor", f"generate 4 images ({steps} steps, guidance)",
                          "floor: 4 images' FLOPs / best matmul rate", target=1.5)

        same = max_pixel_change(generate(pipe, 4, steps, seed=1), generate(pipe, 4, steps, seed=1))
        other = max_pixel_change(generate(pipe, 4, steps, seed=1), generate(pipe, 4, steps, seed=2))
        results.add(s, "same seed twice: max pixel change", same, "[0, 1]", note="0 = bit for bit")
        results.add(s, "another seed: max pixel change", other, "[0, 1]", note="above 0: other images")

        # Where the time goes, at batch 4
        runs = []
        for _ in range(repeats):
            with stopwatches(pipe, device) as spent:
                total, _ = clock(lambda: generate(pipe, 4, steps), device)
            runs.append((total, dict(spent)))
        totals = [total for total, _ in runs]
        for part in runs[0][1]:
            shares = [spent[part] / total for total, spent in runs]
            results.add(s, f"batch 4: {part}", [spent[part] for _, spent in runs], "s",
                        note=f"{statistics.median(shares):.0%} of the call")
        rest = [total - sum(spent.values()) for total, spent in runs]
        results.add(s, "batch 4: the rest (Python, latents, post-processing)", rest, "s",
                    note=f"{statistics.median(rest) / statistics.median(totals):.0%} of the call")

        # Why the gap: the UNet's own rate, and how many small ops it dispatches
        unet_seconds = [spent["UNet"] for _, spent in runs]
        results.add(s, "UNet's achieved rate (its FLOPs / its time above)",
                    [unet_flops * steps / t / 1e9 for t in unet_seconds], "GFLOP/s",
                    note="against the matmul rates above")
        ops = ops_per_call(unet_call(pipe, device))
        results.add(s, "torch ops per UNet call", ops, "ops", note="top-level aten ops (torch.profiler)")
        tiny = tiny_op_seconds(device)
        results.add(s, "one tiny torch op (add on 1 element)", [t * 1e6 for t in tiny], "us")
        results.add(s, f"ops x tiny op, {steps} steps", [ops * steps * t for t in tiny], "s",
                    note="the least the UNet's op dispatch costs, at batch 4")

        if not args.no_knobs:
            knobs_section(results, pipe, args, device)


def unet_call(pipe, device, batch: int = 8):
    """One UNet call on random latents and text, as one guided step of 4 images makes it."""
    size = pipe.unet.config.sample_size
    latents = torch.randn(batch, pipe.unet.config.in_channels, size, size, device=device)
    text = torch.randn(batch, pipe.tokenizer.model_max_length, pipe.text_encoder.config.hidden_size, device=device)
    return lambda: pipe.unet(latents, 500, encoder_hidden_states=text)


@contextmanager
def classic_attention(pipe):
    """diffusers' `AttnProcessor` (matmul, softmax, matmul) instead of PyTorch's fused SDPA."""
    from diffusers.models.attention_processor import AttnProcessor

    saved = {model: model.attn_processors for model in (pipe.unet, pipe.vae)}
    for model in saved:
        model.set_attn_processor(AttnProcessor())
    try:
        yield
    finally:
        for model, processors in saved.items():
            model.set_attn_processor(dict(processors))


@contextmanager
def channels_last(pipe):
    for model in (pipe.unet, pipe.vae):
        model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for model in (pipe.unet, pipe.vae):
            model.to(memory_format=torch.contiguous_format)


@contextmanager
def fused_qkv(pipe):
    pipe.fuse_qkv_projections()
    try:
        yield
    finally:
        pipe.unfuse_qkv_projections()


@contextmanager
def flush_denormal():
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def unet_swapped(pipe, unet):
    original = pipe.unet
    pipe.unet = unet
    try:
        yield
    finally:
        pipe.unet = original


def knobs_section(results: Results, pipe, args, device):
    """Each speed switch against the pipeline as `load_pipeline` gives it, in the same rounds."""
    s, steps = "1", args.steps
    knobs = {
        "as loaded (SDPA attention)": nullcontext,
        "classic attention (AttnProcessor)": lambda: classic_attention(pipe),
        "fused QKV projections": lambda: fused_qkv(pipe),
        "channels_last (UNet, VAE)": lambda: channels_last(pipe),
        "flush denormals": flush_denormal,
        "torch.inference_mode": torch.inference_mode,
    }
    if torch.device(device).type == "cpu" and not args.quick:
        # Threads first on one UNet call: on a busy machine more threads than free cores can be
        # a hundred times slower (each of thousands of small ops waits for a descheduled thread).
        mine, other = torch.get_num_threads(), 2 if torch.get_num_threads() == 1 else 1
        call = unet_call(pipe, device)

        def with_threads(n):
            def timed():
                with torch.no_grad(), threads(n):
                    return call()
            return timed

        times, _, _ = interleave({n: with_threads(n) for n in (mine, other)}, max(args.repeats, 5), device)
        for n in (mine, other):
            results.add(s, f"one UNet call at batch 8, {n} thread{'s' * (n > 1)}", times[n], "s")
        ratio = results.add_ratio(s, f"UNet call: {other} / {mine} thread{'s' * (mine > 1)}",
                                  f"one UNet call at batch 8, {other} thread{'s' * (other > 1)}",
                                  f"one UNet call at batch 8, {mine} thread{'s' * (mine > 1)}")
        if ratio.median < 3:
            knobs[f"torch.set_num_threads({other})"] = lambda: threads(other)
        else:
            ratio.note = "too slow under this load to time whole generations with it"
    if args.compile:
        try:
            compiled = torch.compile(pipe.unet)
            with unet_swapped(pipe, compiled):
                seconds, _ = clock(lambda: generate(pipe, 4, steps), device)
            results.add(s, "torch.compile(unet): first call (compiles)", seconds, "s")
            knobs["torch.compile(unet)"] = lambda: unet_swapped(pipe, compiled)
        except Exception as err:  # no C++ compiler, an unsupported platform...: say so, go on
            results.add(s, "torch.compile(unet)", float("nan"), "s", note=f"failed: {type(err).__name__}: {err}"[:200])

    def run(knob):
        def call():
            with knob():
                return generate(pipe, 4, steps)
        return call

    times, outputs, notes = interleave({name: run(knob) for name, knob in knobs.items()}, args.repeats, device,
                                       warmup=args.warmup, too_slow=10)
    reference = "as loaded (SDPA attention)"
    for name in knobs:
        change = max_pixel_change(outputs[name], outputs[reference])
        note = f"max pixel change {change:.1e}" + (f"; {notes[name]}" if name in notes else "")
        results.add(s, f"switch: {name}, 4 images", times[name], "s", note=note)
        if name != reference:
            results.add_ratio(s, f"switch: {name} / as loaded", f"switch: {name}, 4 images",
                              f"switch: {reference}, 4 images")


# --------------------------------------------------------------------------
# Section 2: the course's overheads
# --------------------------------------------------------------------------


def unchecked_pipelines(pipe):
    """The toy components without a safety checker: as a `StableDiffusionPipeline` and as diffusers'
    deprecated `StableDiffusionPipelineSafe` (whose checker breaks on flagged images at index >= 2)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.deprecated.stable_diffusion_safe import StableDiffusionPipelineSafe

    components = {k: v for k, v in pipe.components.items() if k not in ("safety_checker", "image_encoder")}
    plain = StableDiffusionPipeline(**components, safety_checker=None, requires_safety_checker=False)
    safe = StableDiffusionPipelineSafe(**components, safety_checker=None, requires_safety_checker=False)
    for p in (plain, safe):
        p.set_progress_bar_config(disable=True)
    safe.safety_concept = sld.TOY_SAFETY_CONCEPT
    return plain, safe


def overheads_section(results: Results, pipe, args, device):
    s, steps = "2", args.steps
    plain, safe = unchecked_pipelines(pipe)

    def seeded():
        return gpu.make_generator(0)

    # MEDIUM, with its warm-up cut to half the steps when there are fewer than 20 (--quick)
    medium = dict(sld.PRESETS["MEDIUM"], sld_warmup_steps=min(sld.PRESETS["MEDIUM"]["sld_warmup_steps"], steps // 2))
    variants = {
        "pipe(...)": lambda: generate(pipe, 4, steps),
        "utils.inference.sample": lambda: inference.sample(
            pipe, PROMPTS, num_inference_steps=steps, guidance_scale=GUIDANCE_SCALE, generator=seeded(),
            output_type="np").images,
        "utils.sld.generate MEDIUM": lambda: sld.generate(
            pipe, PROMPTS, preset="MEDIUM", num_inference_steps=steps, guidance_scale=GUIDANCE_SCALE,
            generator=seeded(), output_type="np", **medium).images,
        "utils.sld.generate MEDIUM, no checker": lambda: sld.generate(
            plain, PROMPTS, preset="MEDIUM", num_inference_steps=steps, guidance_scale=GUIDANCE_SCALE,
            generator=seeded(), output_type="np", safety_concept=sld.TOY_SAFETY_CONCEPT, **medium).images,
        "StableDiffusionPipelineSafe MEDIUM, no checker": lambda: safe(
            PROMPTS, num_inference_steps=steps, guidance_scale=GUIDANCE_SCALE, generator=seeded(),
            output_type="np", **medium).images,
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The decode_latents method is deprecated")  # diffusers' own call
        times, outputs, _ = interleave(variants, args.repeats, device, warmup=args.warmup)
    compared = {"utils.inference.sample": "pipe(...)",
                "utils.sld.generate MEDIUM, no checker": "StableDiffusionPipelineSafe MEDIUM, no checker"}
    notes = {name: f"max pixel change vs {other}: {max_pixel_change(outputs[name], outputs[other]):.1e}"
             for name, other in compared.items()}
    for name, seconds in times.items():
        results.add(s, f"{name}, 4 images, {steps} steps", seconds, "s", note=notes.get(name, ""))

    def t(name):
        return f"{name}, 4 images, {steps} steps"

    results.add_ratio(s, "hand-written loop / pipe(...)", t("utils.inference.sample"), t("pipe(...)"), target=1.05)
    results.add_ratio(s, "utils.sld (MEDIUM) / plain guidance pipe(...)", t("utils.sld.generate MEDIUM"),
                      t("pipe(...)"), target=1.6, note="ideal 1.5: the UNet's batch grows from 2B to 3B")
    results.add_ratio(s, "utils.sld / StableDiffusionPipelineSafe (MEDIUM, no checker)",
                      t("utils.sld.generate MEDIUM, no checker"), t("StableDiffusionPipelineSafe MEDIUM, no checker"),
                      target=1.0)
    checker_section(results, pipe, args, device, outputs["pipe(...)"])


def checker_section(results: Results, pipe, args, device, images):
    """`utils.safety.decide` against `StableDiffusionSafetyChecker.forward`, on the same batch."""
    s = "2"
    checker, extractor = pipe.safety_checker, pipe.feature_extractor
    batch = np.concatenate([images] * (CHECKER_BATCH // len(images)))  # (16, H, W, 3) in [0, 1]
    pil = pipe.image_processor.numpy_to_pil(batch)
    param = next(checker.parameters())
    clip_input = extractor(pil, return_tensors="pt").pixel_values.to(device, param.dtype)

    def embed():
        return checker.visual_projection(checker.vision_model(clip_input)[1])  # (B, D)

    with torch.no_grad():
        embeds = embed()

    def decision_only():  # the checker's own forward, its CLIP tower skipped: it is given the embeddings
        with vision_skipped(checker):
            return checker(images=batch.copy(), clip_input=embeds)[1]

    variants = {
        "StableDiffusionSafetyChecker(...)": lambda: checker(images=batch.copy(), clip_input=clip_input)[1],
        "embeddings + utils.safety.decide": lambda: safety.decide(embed(), **safety.checker_parameters(checker)),
        "the checker's decision only": decision_only,
        "utils.safety.decide only": lambda: safety.decide(embeds, **safety.checker_parameters(checker)),
    }
    with torch.no_grad(), inference.library_messages():  # the checker logs a warning per flagged batch
        times, outputs, _ = interleave(variants, args.repeats if args.quick else max(args.repeats, 5), device,
                                       warmup=args.warmup)
    verdicts = {name: [bool(flag) for flag in flags] for name, flags in outputs.items()}
    same = len({tuple(flags) for flags in verdicts.values()}) == 1
    for name, seconds in times.items():
        note = f"same verdicts in all four: {same}" if name == "utils.safety.decide only" else ""
        results.add(s, f"checker: {name}, {CHECKER_BATCH} images", seconds, "s", note=note)

    def t(name):
        return f"checker: {name}, {CHECKER_BATCH} images"

    results.add_ratio(s, "utils.safety.decide / the checker's decision", t("utils.safety.decide only"),
                      t("the checker's decision only"), target=1.0)
    results.add_ratio(s, "embeddings + utils.safety.decide / StableDiffusionSafetyChecker",
                      t("embeddings + utils.safety.decide"), t("StableDiffusionSafetyChecker(...)"), target=1.0)


class _PooledIsInput(torch.nn.Module):
    """Stands in for the checker's CLIP vision tower: its pooled output (index 1) is its input."""

    def forward(self, x):
        return x, x


@contextmanager
def vision_skipped(checker):
    """The checker with its vision tower and projection replaced: `clip_input` is then the embeddings."""
    vision, projection = checker.vision_model, checker.visual_projection
    checker.vision_model, checker.visual_projection = _PooledIsInput(), torch.nn.Identity()
    try:
        yield checker
    finally:
        checker.vision_model, checker.visual_projection = vision, projection


# --------------------------------------------------------------------------
# Section 3: the course itself
# --------------------------------------------------------------------------


def pytest_summary(stdout: str) -> str:
    """pytest's last summary line, the tests that failed, and the slowest (from `--durations`), in one line."""
    out = stdout.splitlines()
    summary = [line.strip("= ") for line in out if " in " in line and ("passed" in line or "failed" in line)]
    failed = [line.split(" - ")[0] for line in out if line.startswith(("FAILED", "ERROR"))]
    timed = [re.match(r"^([0-9.]+s) (?:call|setup|teardown)\s+(.*)$", line) for line in out]
    slowest = [f"{m[1]} {m[2].split('/')[-1]}" for m in timed if m]
    return "; ".join((summary[-1:] or [stdout[-200:]]) + failed + ["slowest: " + ", ".join(slowest)] * bool(slowest))


def _pytest(args_, cwd, env) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=3", *args_],
                          cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.returncode, pytest_summary(done.stdout)


def course_section(results: Results):
    r"""
    In a fresh clone of the last commit (`git clone` of this repository): the unit tests, then
    each notebook under nbval (`pytest notebooks/NN.ipynb`), each in its own pytest, with this
    machine's Python environment (setting one up is not timed). Runs once: it takes long.
    """
    s = "3"
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        start = time.perf_counter()
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, capture_output=True)
        cloned = time.perf_counter() - start
        results.add(s, "git clone (local)", cloned, "s")
        env = dict(os.environ, COURSE_PROFILE="toy", HF_HUB_OFFLINE="1", PYTHONPATH=str(clone))
        total, failures = cloned, 0
        seconds, code, summary = _pytest(["tests"], clone, env)
        total, failures = total + seconds, failures + (code != 0)
        results.add(s, "unit tests (pytest tests)", seconds, "s", note=f"{summary}; load {load_average()}")
        notebook_total = 0.0
        for notebook in sorted((clone / "notebooks").glob("*.ipynb")):
            seconds, code, summary = _pytest([f"notebooks/{notebook.name}"], clone, env)
            total, failures, notebook_total = total + seconds, failures + (code != 0), notebook_total + seconds
            results.add(s, f"pytest notebooks/{notebook.name}", seconds, "s", target=90,
                        note=f"{summary}; load {load_average()}")
        results.add(s, "the suite (unit tests + every notebook, summed)", total - cloned, "s", target=480,
                    note="each part in its own pytest: a few seconds of start-up each more than one run")
        results.add(s, "fresh clone to a passing run", total, "s",
                    note=("all passed" if failures == 0 else f"{failures} pytest runs failed")
                    + "; the virtual environment is reused, not installed")


# --------------------------------------------------------------------------
# Section 4: GPU
# --------------------------------------------------------------------------


def gpu_section(results: Results, pipe, args, device):
    """On CUDA: fp16 against fp32, and the peak memory under each memory-plan switch."""
    s, steps = "4", args.steps
    if torch.device(device).type == "cuda":
        half = models.load_pipeline("toy", device=device, dtype=torch.float16)
        variants = {"fp32": lambda: generate(pipe, 4, steps), "fp16": lambda: generate(half, 4, steps)}
        times, outputs, _ = interleave(variants, args.repeats, device, warmup=args.warmup)
        for name in ("fp32", "fp16"):
            results.add(s, f"{name}, 4 images, {steps} steps", times[name], "s")
        results.add_ratio(s, "fp16 / fp32", f"fp16, 4 images, {steps} steps", f"fp32, 4 images, {steps} steps",
                          note=f"max pixel change {max_pixel_change(outputs['fp16'], outputs['fp32']):.1e};"
                               f" {per_image_change(outputs['fp16'], outputs['fp32'])} (fp16, fp32)")
        del half
        plans = {"no switch": gpu.MemoryPlan(), "VAE slicing": gpu.MemoryPlan(vae_slicing=True),
                 "attention slicing": gpu.MemoryPlan(attention_slicing=True),
                 "model CPU offload": gpu.MemoryPlan(model_cpu_offload=True)}
        for name, plan in plans.items():
            try:
                planned = gpu.apply_memory_plan(models.load_pipeline("toy", device="cpu"), plan, device)
                gpu.free_memory()
                gpu.reset_peak_memory(device)
                seconds, _ = clock(lambda: generate(planned, 4, steps), device)
                results.add(s, f"memory plan: {name}, peak GPU memory", gpu.peak_memory(device) / 2**20, "MiB",
                            note=f"{seconds:.2f} s for 4 images")
                del planned
            except Exception as err:  # e.g. offload without accelerate installed: say so, go on
                results.add(s, f"memory plan: {name}, peak GPU memory", float("nan"), "MiB",
                            note=f"failed: {type(err).__name__}: {err}"[:200])
    for name, batch, compiled, rate in QUOTED_GPU:
        results.add(s, f"QUOTED, not measured: SD v1.5 {name} fp16, batch {batch}"
                    + (", torch.compile" if compiled else ""), QUOTED_STEPS / rate / batch, "s/image",
                    note=f"{rate} it/s at {QUOTED_STEPS} steps, 512x512 (diffusers docs)")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per measurement (default 5)")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    parser.add_argument("--device", default=None, help="default: utils.gpu.pick_device()")
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: 2 steps, 1 round, no subprocess, no compile, no thread switch")
    parser.add_argument("--course", action="store_true",
                        help="instead: time the notebooks and the tests in a fresh clone (section 3; long)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    parser.add_argument("--no-knobs", action="store_true", help="skip the speed switches")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.compile = 2, 1, False
    args.warmup = 0 if args.quick else 1  # untimed calls before the rounds
    return args


def run(args) -> Results:
    """Measure everything `args` asks for; return the results (the table is `format_table(results)`).
    torch's thread count and diffusers' log level are set for the run and restored after it."""
    from diffusers.utils import logging as diffusers_logging

    threads_before, verbosity_before = torch.get_num_threads(), diffusers_logging.get_verbosity()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or gpu.pick_device()
    results = Results(settings={"steps": args.steps, "guidance": GUIDANCE_SCALE, "repeats": args.repeats,
                                "quick": args.quick, "prompts": len(PROMPTS)},
                      machine=machine_info(device), progress=not args.quick)
    try:
        if args.course:
            course_section(results)
        else:
            diffusers_logging.set_verbosity_error()  # the checker's warning per flagged image, deprecations
            pipe = models.load_pipeline("toy", device=device)
            pipeline_section(results, pipe, args, device)
            overheads_section(results, pipe, args, device)
            gpu_section(results, pipe, args, device)
    finally:
        torch.set_num_threads(threads_before)
        diffusers_logging.set_verbosity(verbosity_before)
    results.machine["load average at end"] = load_average()
    return results


def main(argv=None):
    args = parse_args(argv)
    results = run(args)
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(asdict(results), indent=1, default=str))


if __name__ == "__main__":
    main()
