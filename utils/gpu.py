"""Where am I, and what can this machine do? Device, dtype, memory, timing, seeding.

Taught in `notebooks/00_start_here.ipynb` (preflight, profiles, memory plan);
the timer, seeds and memory functions are used from
`notebooks/02_diffusion_inference.ipynb` on.

Everything here works on a CPU-only machine; the CUDA branches run when a GPU
is present. Nothing here downloads anything.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

GIB = 2**30
"""Bytes in one GiB (what `nvidia-smi` and Colab call "GB")."""


# --------------------------------------------------------------------------
# Where, which device, which dtype
# --------------------------------------------------------------------------


def where_am_i() -> str:
    r"""
    Say where this Python process runs.

    Returns:
        `str`: `"colab"` (Google Colab: `google.colab` is imported), `"kaggle"`
        (the `KAGGLE_KERNEL_RUN_TYPE` environment variable is set) or `"local"`.

    Example:

    ```py
    >>> utils.gpu.where_am_i()
    'local'
    ```
    """
    if "google.colab" in sys.modules:
        return "colab"
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE"):
        return "kaggle"
    return "local"


def pick_device() -> str:
    r"""
    Pick the best device PyTorch can use here: a CUDA GPU, else Apple's MPS, else the CPU.

    Returns:
        `str`: `"cuda"`, `"mps"` or `"cpu"`.

    Example:

    ```py
    >>> utils.gpu.pick_device()  # on a laptop without a GPU
    'cpu'
    ```
    """
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str | torch.device = "cpu", prefer_bf16: bool = False) -> torch.dtype:
    r"""
    Pick the floating-point type to run a model in on `device`.

    - CUDA: `torch.float16`. Half precision halves memory and runs on every CUDA
      GPU's fast paths (a T4 has no fast bfloat16); Stable Diffusion v1.5 ships
      fp16 weights. fp16 keeps about 3 significant decimal digits, bfloat16
      only about 2: the safety checker rounds its scores to 3 decimals, so fp16
      is the better default for this course.
    - CUDA with `prefer_bf16=True` on an Ampere or newer GPU (compute
      capability 8.0+, e.g. A100, L4, H100): `torch.bfloat16`. It has fp32's
      range, so nothing overflows to `inf`/`NaN` (a NaN image turns black, just
      like an image the safety checker blocked); use it for models that
      overflow in fp16, or for training.
    - CPU and MPS: `torch.float32`. fp16 on the CPU is slow or unsupported for
      some operations, and float32 gives the same numbers on every machine.

    Args:
        device (`str` or `torch.device`, *optional*, defaults to `"cpu"`):
            The device the model will run on.
        prefer_bf16 (`bool`, *optional*, defaults to `False`):
            Use `torch.bfloat16` on CUDA GPUs that support it natively.

    Returns:
        `torch.dtype`: `torch.float16`, `torch.bfloat16` or `torch.float32`.

    Example:

    ```py
    >>> utils.gpu.pick_dtype("cpu")
    torch.float32
    >>> utils.gpu.pick_dtype("cuda")
    torch.float16
    ```
    """
    device = torch.device(device)
    if device.type != "cuda":
        return torch.float32
    if prefer_bf16 and torch.cuda.get_device_capability(device)[0] >= 8:
        return torch.bfloat16
    return torch.float16


# --------------------------------------------------------------------------
# Reproducibility: seeds and generators
# --------------------------------------------------------------------------


def seed_everything(seed: int) -> int:
    r"""
    Seed Python's `random`, NumPy and PyTorch (CPU and every GPU) with one number.

    Call it at the top of a notebook so that everything random in it (data,
    initial weights, sampling) repeats from run to run. For the starting noise
    of a diffusion pipeline, pass an explicit generator instead
    (`make_generator`): that makes each image's seed visible in the code.

    Args:
        seed (`int`):
            A non-negative integer.

    Returns:
        `int`: the seed, so a notebook can print it.

    Raises:
        `ValueError`: if `seed` is not a non-negative integer.

    Example:

    ```py
    >>> utils.gpu.seed_everything(0)
    0
    >>> torch.rand(1)
    tensor([0.4963])
    ```
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # NumPy's legacy seed takes 32 bits
    torch.manual_seed(seed)  # seeds the CPU and all CUDA devices
    return seed


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    r"""
    Make a seeded `torch.Generator`, to pass as `generator=` to a diffusers pipeline.

    The same seed gives the same starting noise, hence the same image. A CPU
    generator (the default) gives the same noise on every machine, GPU or not;
    diffusers draws the noise on the CPU and moves it to the pipeline's device.
    A CUDA generator is a little faster but its numbers differ from the CPU's.

    Args:
        seed (`int`):
            The seed.
        device (`str` or `torch.device`, *optional*, defaults to `"cpu"`):
            Where the generator draws its numbers.

    Returns:
        `torch.Generator`: a generator seeded with `seed`.

    Example:

    ```py
    >>> generator = utils.gpu.make_generator(42)
    >>> image = pipe("a red circle", generator=generator).images[0]
    ```
    """
    return torch.Generator(device=device).manual_seed(int(seed))


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


def synchronize(device: str | torch.device | None = None) -> None:
    r"""
    Wait until the GPU has finished its queued work (a no-op on the CPU).

    GPU calls return before the GPU is done; timing without synchronising
    measures only how long it took to queue the work.

    Args:
        device (`str` or `torch.device`, *optional*):
            The device to wait for. Defaults to the device `pick_device` picks.
    """
    device = torch.device(device if device is not None else pick_device())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class Timing:
    """What `timer` measured: `seconds` is filled in when the `with` block ends."""

    label: str | None = None
    seconds: float = float("nan")


@contextmanager
def timer(label: str | None = None, device: str | torch.device | None = None, verbose: bool = True):
    r"""
    Time a block of code, waiting for the GPU before starting and before stopping.

    Args:
        label (`str`, *optional*):
            A name to print with the time.
        device (`str` or `torch.device`, *optional*):
            The device to synchronise. Defaults to the device `pick_device` picks.
        verbose (`bool`, *optional*, defaults to `True`):
            Print `"<label>: <seconds> s"` at the end (only when a label is given).

    Yields:
        `Timing`: its `seconds` is set when the block ends.

    Example:

    ```py
    >>> with utils.gpu.timer("one image") as t:
    ...     image = pipe("a red circle").images[0]
    one image: 1.23 s
    >>> t.seconds
    1.2345
    ```
    """
    timing = Timing(label=label)
    synchronize(device)
    start = time.perf_counter()
    yield timing
    synchronize(device)
    timing.seconds = time.perf_counter() - start
    if verbose and label:
        print(f"{label}: {timing.seconds:.2f} s")


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------


def gpu_memory(device: str | torch.device = "cuda") -> tuple[int, int]:
    r"""
    Total and free memory of a CUDA GPU, in bytes, as the driver reports it.

    Args:
        device (`str` or `torch.device`, *optional*, defaults to `"cuda"`):
            The CUDA device.

    Returns:
        `tuple[int, int]`: `(total_bytes, free_bytes)`.

    Raises:
        `RuntimeError`: if there is no CUDA GPU.

    Example:

    ```py
    >>> total, free = utils.gpu.gpu_memory()
    >>> round(total / utils.gpu.GIB, 1)  # a Colab T4
    14.7
    ```
    """
    if not torch.cuda.is_available():
        raise RuntimeError("There is no CUDA GPU here, so there is no GPU memory to report.")
    free, total = torch.cuda.mem_get_info(torch.device(device))
    return total, free


def peak_memory(device: str | torch.device | None = None) -> int:
    r"""
    How much memory the work since the last `reset_peak_memory` needed, in bytes.

    - On CUDA: the most memory PyTorch's allocator held for tensors at any one
      time (`torch.cuda.max_memory_allocated`).
    - On the CPU (and MPS): the process's peak resident memory so far
      (`ru_maxrss`; on Windows psutil's peak working set). It includes
      everything loaded since the process started (Python, the libraries, the
      models) and cannot be reset: compare it before and after.

    Args:
        device (`str` or `torch.device`, *optional*):
            Defaults to the device `pick_device` picks.

    Returns:
        `int`: bytes. Divide by `GIB` for GiB.

    Example:

    ```py
    >>> utils.gpu.reset_peak_memory()
    >>> image = pipe("a red circle").images[0]
    >>> print(f"{utils.gpu.peak_memory() / utils.gpu.GIB:.2f} GiB")
    3.41 GiB
    ```
    """
    device = torch.device(device if device is not None else pick_device())
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource  # the process's peak resident memory (ru_maxrss: KiB on Linux, bytes on macOS)
    except ImportError:  # Windows
        import psutil

        return int(psutil.Process().memory_info().peak_wset)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_memory(device: str | torch.device | None = None) -> None:
    r"""
    Start a new peak-memory measurement (CUDA); on the CPU it only collects garbage.

    Args:
        device (`str` or `torch.device`, *optional*):
            Defaults to the device `pick_device` picks.
    """
    device = torch.device(device if device is not None else pick_device())
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def free_memory() -> None:
    r"""
    Give memory back: collect Python garbage and empty PyTorch's GPU caches.

    Delete your own references first (`del pipe`); memory that a variable
    still points to cannot be freed.

    Example:

    ```py
    >>> del pipe
    >>> utils.gpu.free_memory()
    ```
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        torch.mps.empty_cache()


# --------------------------------------------------------------------------
# Memory plan: which of diffusers' memory switches to turn on
# --------------------------------------------------------------------------

# Stable Diffusion v1.5 in fp16: about 2.6 GiB of weights (UNet 1.6, safety
# checker 0.6, text encoder 0.25, VAE 0.16) and about 4 GiB at its peak for
# one 512x512 image with PyTorch 2's scaled-dot-product attention.
SD15_ROOMY_GIB = 12.0
"""At or above this much GPU memory, SD v1.5 (fp16) needs no switch, batches included (a 15 GB T4)."""
SD15_FITS_GIB = 6.0
"""At or above this, one image fits; VAE slicing lets batches fit too."""
SD15_TIGHT_GIB = 4.0
"""Below this, every switch is on, attention slicing included."""


@dataclass(frozen=True)
class MemoryPlan:
    r"""
    Which of diffusers' memory switches to turn on, and why.

    Args:
        attention_slicing (`bool`): `pipe.enable_attention_slicing()`: compute
            attention a slice at a time. Saves memory, but slows PyTorch 2's
            fused attention down, so it is a last resort.
        model_cpu_offload (`bool`): `pipe.enable_model_cpu_offload()`: keep
            the models in CPU memory and move each to the GPU only while it
            runs. Saves the most memory for a small cost in speed.
        vae_slicing (`bool`): `pipe.vae.enable_slicing()`: decode a batch of
            latents one image at a time.
        vae_tiling (`bool`): `pipe.vae.enable_tiling()`: decode each image in
            overlapping tiles (for large images or very small GPUs).
        reason (`str`): why, in words.
    """

    attention_slicing: bool = False
    model_cpu_offload: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    reason: str = ""

    def switches(self) -> list[str]:
        """The names of the switches that are on, e.g. `['vae_slicing']`."""
        names = ["model_cpu_offload", "attention_slicing", "vae_slicing", "vae_tiling"]
        return [name for name in names if getattr(self, name)]


def plan_memory(total_gib: float | None, profile: str = "sd15") -> MemoryPlan:
    r"""
    Decide which memory switches a pipeline needs on a GPU with `total_gib` of memory.

    A pure function: it looks at numbers, not at the machine, so you can ask
    what would happen on a GPU you do not have.

    | GPU memory (GiB) | switches for `sd15` (fp16) |
    | --- | --- |
    | 12 or more (T4, L4, A100) | none |
    | 6 to 12 | VAE slicing |
    | 4 to 6 | model CPU offload, VAE slicing and tiling |
    | under 4 | all of the above and attention slicing |

    The `toy` profile's model is a few MB: it never needs a switch.

    Args:
        total_gib (`float` or `None`):
            The GPU's total memory in GiB; `None` when there is no GPU.
        profile (`str`, *optional*, defaults to `"sd15"`):
            `"toy"` or `"sd15"` (resolve `"auto"` first with
            `utils.models.resolve_profile`).

    Returns:
        `MemoryPlan`: the switches and the reason.

    Raises:
        `ValueError`: for another profile, or a negative memory size.

    Example:

    ```py
    >>> utils.gpu.plan_memory(15.0, "sd15").switches()  # a Colab T4
    []
    >>> utils.gpu.plan_memory(4.0, "sd15").switches()
    ['model_cpu_offload', 'vae_slicing', 'vae_tiling']
    ```
    """
    if profile not in ("toy", "sd15"):
        raise ValueError(
            f"plan_memory needs the profile 'toy' or 'sd15', got {profile!r}; "
            "resolve 'auto' first with utils.models.resolve_profile()."
        )
    if total_gib is not None and total_gib < 0:
        raise ValueError(f"total_gib must be at least 0, got {total_gib}")
    if profile == "toy":
        return MemoryPlan(reason="the toy model is a few MB: no memory switch is needed")
    if total_gib is None:
        return MemoryPlan(reason="no GPU: memory switches only matter on a GPU")
    size = f"{total_gib:.1f} GiB"
    if total_gib >= SD15_ROOMY_GIB:
        return MemoryPlan(reason=f"{size} holds SD v1.5 in fp16 (about 4 GiB at its peak) with room for batches")
    if total_gib >= SD15_FITS_GIB:
        return MemoryPlan(
            vae_slicing=True,
            reason=f"{size} holds one SD v1.5 image; VAE slicing decodes a batch one image at a time",
        )
    if total_gib >= SD15_TIGHT_GIB:
        return MemoryPlan(
            model_cpu_offload=True,
            vae_slicing=True,
            vae_tiling=True,
            reason=f"{size} is tight: only the model that is running stays on the GPU, and the VAE decodes in slices and tiles",
        )
    return MemoryPlan(
        attention_slicing=True,
        model_cpu_offload=True,
        vae_slicing=True,
        vae_tiling=True,
        reason=f"{size} is very little: every switch is on, attention slicing too (slower)",
    )


def apply_memory_plan(pipe, plan: MemoryPlan, device: str | torch.device = "cuda"):
    r"""
    Put a diffusers pipeline on `device`, turning on the switches that `plan` asks for.

    With model CPU offload the pipeline stays in CPU memory and diffusers moves
    each model to the GPU when it runs: do not call `pipe.to("cuda")` after
    that. Otherwise the pipeline is moved to `device`.

    Args:
        pipe (`DiffusionPipeline`):
            A loaded pipeline, e.g. a `StableDiffusionPipeline`.
        plan (`MemoryPlan`):
            From `plan_memory`.
        device (`str` or `torch.device`, *optional*, defaults to `"cuda"`):
            Where the pipeline runs.

    Returns:
        The same pipeline, placed and switched.

    Raises:
        `ValueError`: if the plan offloads to the CPU but `device` is not a GPU.

    Example:

    ```py
    >>> plan = utils.gpu.plan_memory(utils.gpu.gpu_memory()[0] / utils.gpu.GIB, "sd15")
    >>> pipe = utils.gpu.apply_memory_plan(pipe, plan, "cuda")
    ```
    """
    device = torch.device(device)
    if plan.model_cpu_offload:
        if device.type == "cpu":
            raise ValueError("model CPU offload moves models to a GPU; the device here is the CPU")
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if plan.attention_slicing:
        pipe.enable_attention_slicing()
    if plan.vae_slicing:
        pipe.vae.enable_slicing()
    if plan.vae_tiling:
        pipe.vae.enable_tiling()
    return pipe
