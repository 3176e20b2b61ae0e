"""The course's two model profiles, chosen in one place, and the loaders for them.

| profile | models | runs on |
| --- | --- | --- |
| `toy` | the course's own tiny text-to-image model and CLIP, shipped in this package (`utils/weights/`) | any CPU, offline |
| `sd15` | Stable Diffusion v1.5, its safety checker, CLIP ViT-L/14 (from the Hugging Face Hub) | a CUDA GPU with Hub access |
| `auto` | `sd15` where a CUDA GPU and the Hub are both reachable, else `toy` | anywhere |

Choose a profile with the `profile=` argument or the `COURSE_PROFILE`
environment variable (`COURSE_PROFILE=toy make course`); never by editing
cells. Without either, the profile is `auto`. Taught in
`notebooks/00_start_here.ipynb`.

The `COURSE_DEVICE` environment variable (`cpu`, `cuda`, `cuda:N`, `mps`) forces
the device for any profile, e.g. `COURSE_PROFILE=sd15 COURSE_DEVICE=cpu` runs
Stable Diffusion on the CPU (slowly: it warns) where it would otherwise refuse.

Weights are loaded only as safetensors, and never with `trust_remote_code`.
diffusers and transformers are imported inside the loaders, so importing this
module is quick.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from . import gpu
from .i18n import pad, tr

PROFILES = ("toy", "sd15", "auto")
"""The valid profile names."""

PROFILE_ENV_VAR = "COURSE_PROFILE"
"""The environment variable that chooses the profile when no argument does."""

DEVICE_ENV_VAR = "COURSE_DEVICE"
"""The environment variable that forces the device (for any profile) when no argument does."""

DEVICE_TYPES = ("cpu", "cuda", "mps")
"""The device types `COURSE_DEVICE` may name (`cuda` also as `cuda:N`)."""

QUICK_ENV_VAR = "COURSE_QUICK"
"""The environment variable that shrinks the notebooks' `sd15` step counts and image counts (see `quick`)."""

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
TOY_SD_DIR = WEIGHTS_DIR / "toy-sd"
"""The toy `StableDiffusionPipeline` folder (model_index.json, unet, vae, text_encoder, tokenizer, scheduler, safety_checker, feature_extractor)."""
TOY_CLIP_DIR = WEIGHTS_DIR / "toy-clip"
"""The toy `CLIPModel` + `CLIPProcessor` folder."""

SD15_PIPELINE_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_SAFETY_CHECKER_REPO = "CompVis/stable-diffusion-safety-checker"
SD15_SLD_REPO = "AIML-TUDA/stable-diffusion-safe"
SD15_CLIP_REPO = "openai/clip-vit-large-patch14"

BUILD_TOY_COMMAND = "python -m utils.toy.train"


class _TorchvisionAdvice(logging.Filter):
    """transformers warns, once per process, that `CLIPImageProcessor` "requires torchvision" and
    falls back to its PIL version, which is what the course uses. Its advice to install torchvision,
    followed over a weak network, can replace the pinned torch; the course hides that one message."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_TorchvisionAdvice())


class ToyModelNotBuiltError(FileNotFoundError):
    """The toy model's files are not in the package (they have not been built yet)."""


class ProfileUnavailableError(RuntimeError):
    """The profile cannot run here: no GPU, no Hub access, or not enough GPU memory. The message says what to do."""


class SlowDeviceWarning(UserWarning):
    """The `sd15` profile runs on the CPU, as asked: it works, at minutes per image."""


# --------------------------------------------------------------------------
# Choosing the profile
# --------------------------------------------------------------------------


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


_hub_answer: tuple[float, bool] | None = None  # (when, answer): remembered for a minute


def hub_reachable(timeout: float = 3.0) -> bool:
    r"""
    Ask the Hugging Face Hub, briefly, whether it answers (for SD v1.5's repository).

    Returns `False` at once when `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`)
    is set. Otherwise it asks in a background thread and gives up after
    `timeout` seconds, so a dead network never hangs a notebook. The answer
    is remembered for a minute.

    Args:
        timeout (`float`, *optional*, defaults to `3.0`):
            Seconds to wait for an answer.

    Returns:
        `bool`: `True` if the Hub answered.
    """
    global _hub_answer
    if _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE"):
        return False
    if _hub_answer is not None and time.monotonic() - _hub_answer[0] < 60:
        return _hub_answer[1]
    answers = []

    def ask():
        try:
            from huggingface_hub import HfApi

            HfApi().model_info(SD15_PIPELINE_REPO, timeout=timeout)
            answers.append(True)
        except Exception:  # offline, DNS failure, timeout, HTTP error: all mean "not reachable"
            answers.append(False)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    answer = bool(answers) and answers[0]
    _hub_answer = (time.monotonic(), answer)
    return answer


def choose_auto_profile(has_cuda: bool, hub_ok: bool) -> tuple[str, str]:
    r"""
    The rule behind `auto`, as a pure function of two facts.

    Args:
        has_cuda (`bool`):
            Is there a CUDA GPU?
        hub_ok (`bool`):
            Is the Hugging Face Hub reachable?

    Returns:
        `tuple[str, str]`: the profile (`"sd15"` or `"toy"`) and why.

    Example:

    ```py
    >>> utils.models.choose_auto_profile(has_cuda=False, hub_ok=True)
    ('toy', 'no CUDA GPU here, and sd15 needs one')
    ```
    """
    if not has_cuda:
        return "toy", tr("no CUDA GPU here, and sd15 needs one")
    if not hub_ok:
        return "toy", tr("a CUDA GPU is here, but the Hugging Face Hub is not reachable: offline, or HF_HUB_OFFLINE is set")
    return "sd15", tr("a CUDA GPU and the Hugging Face Hub are both here")


def resolve_profile(profile: str | None = None) -> tuple[str, str]:
    r"""
    Decide which profile to use, and say why: the one place where the profile is chosen.

    The argument wins; without one, the `COURSE_PROFILE` environment variable;
    without that, `auto`. `auto` becomes `sd15` only where a CUDA GPU and the
    Hugging Face Hub are both reachable, otherwise `toy` (see
    `choose_auto_profile`). The Hub is asked only when there is a GPU.

    Args:
        profile (`str`, *optional*):
            `"toy"`, `"sd15"` or `"auto"` (any case). `None` reads `COURSE_PROFILE`.

    Returns:
        `tuple[str, str]`: the profile (`"toy"` or `"sd15"`, never `"auto"`) and the reason.

    Raises:
        `ValueError`: for an unknown profile name; the message lists the valid ones.

    Example:

    ```py
    >>> utils.models.resolve_profile("toy")
    ('toy', "asked for with profile='toy'")
    >>> utils.models.resolve_profile("auto")  # on a laptop without a GPU
    ('toy', "auto picked toy: no CUDA GPU here, and sd15 needs one")
    ```
    """
    if profile is not None:
        requested, source = profile, f"profile={profile!r}"
    elif os.environ.get(PROFILE_ENV_VAR, "").strip():
        requested = os.environ[PROFILE_ENV_VAR]
        source = f"{PROFILE_ENV_VAR}={requested.strip()}"
    else:
        requested, source = "auto", tr("no profile given and {var} is not set", var=PROFILE_ENV_VAR)
    name = requested.strip().lower() if isinstance(requested, str) else requested
    if name not in PROFILES:
        raise ValueError(tr(
            "Unknown profile {requested!r} (from {source}). Valid profiles: {valid}. "
            "Pass one as profile=..., or set {var}, e.g. {var}=toy.",
            requested=requested, source=source, valid=", ".join(PROFILES), var=PROFILE_ENV_VAR,
        ))
    if name != "auto":
        return name, tr("asked for with {source}", source=source)
    has_cuda = torch.cuda.is_available()
    picked, why = choose_auto_profile(has_cuda, hub_ok=has_cuda and hub_reachable())
    if profile is None and source.startswith(PROFILE_ENV_VAR):
        why = f"{why}; {source}"
    return picked, tr("auto picked {picked}: {why}", picked=picked, why=why)


def default_dtype(profile: str, device: str | torch.device) -> torch.dtype:
    r"""
    The dtype a profile's pipeline runs in: float32 for `toy` (tiny, and the
    same numbers everywhere), `utils.gpu.pick_dtype(device)` for `sd15`.

    Args:
        profile (`str`): `"toy"` or `"sd15"`.
        device (`str` or `torch.device`): where it runs.

    Returns:
        `torch.dtype`
    """
    return torch.float32 if profile == "toy" else gpu.pick_dtype(device)


def quick(full, small):
    r"""
    A notebook's `sd15` setting: `full` normally, `small` when `COURSE_QUICK=1` (a smoke run).

    The one place where the notebooks' `sd15` step counts and image counts shrink. CI
    runs every `sd15` branch on stand-in weights with it (`tests/test_sd15_standin.py`);
    with `COURSE_DEVICE=cpu` it lets you try `sd15` on a CPU in minutes, not hours
    (the images are then rough: few steps).

    Args:
        full: the value for a real run, e.g. `50` steps.
        small: the value for a smoke run, e.g. `2` steps.

    Returns:
        `small` if `COURSE_QUICK` is `1` (or `true`, `yes`, `on`), else `full`.

    Example:

    ```py
    >>> STEPS = 20 if TOY else utils.models.quick(50, 2)
    ```
    """
    return small if _env_flag(QUICK_ENV_VAR) else full


def forced_device() -> str | None:
    r"""
    The device the `COURSE_DEVICE` environment variable forces, or `None` where it is unset (or empty).

    Returns:
        `str` or `None`: `"cpu"`, `"cuda"`, `"cuda:N"` or `"mps"` (lower case, spaces removed).

    Raises:
        `ValueError`: `COURSE_DEVICE` names no device; the message lists the valid values.
        `ProfileUnavailableError`: it names a device this machine does not have (e.g. `cuda` without a GPU).

    Example:

    ```py
    >>> os.environ["COURSE_DEVICE"] = "cpu"
    >>> utils.models.forced_device()
    'cpu'
    ```
    """
    value = os.environ.get(DEVICE_ENV_VAR, "").strip()
    if not value:
        return None
    name = value.lower()
    try:
        kind = torch.device(name).type
    except RuntimeError:  # torch's own message for "gpu", "cuda:x", ...
        kind = None
    if kind not in DEVICE_TYPES:
        raise ValueError(tr(
            "Unknown device {value!r} (from {var}={value}). "
            "Valid devices: cpu, cuda, cuda:N (N a GPU number, e.g. cuda:0), mps. "
            "Or unset {var} to let the profile choose.",
            value=value, var=DEVICE_ENV_VAR,
        ))
    mps = getattr(torch.backends, "mps", None)
    present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps is not None and mps.is_available()}
    if not present[kind]:
        raise ProfileUnavailableError(tr(
            "{var}={value}, but there is no {kind} device here. Set {var}=cpu, or unset it to let the profile choose.",
            var=DEVICE_ENV_VAR, value=value, kind=kind,
        ))
    return name


def resolve_device(profile: str, device: str | torch.device | None = None) -> str | torch.device:
    r"""
    The device a profile's models go to: the argument, else `COURSE_DEVICE`, else the profile's choice.

    The profile's choice is `utils.gpu.pick_device()` for `toy`, and `"cuda"` for
    `sd15` (which refuses without a CUDA GPU). `sd15` on the CPU, asked for with
    the argument or `COURSE_DEVICE=cpu`, runs, with a `SlowDeviceWarning`.

    Args:
        profile (`str`): `"toy"` or `"sd15"` (resolved, see `resolve_profile`).
        device (`str` or `torch.device`, *optional*): an explicit device, respected as given.

    Returns:
        `str` or `torch.device`

    Raises:
        `ValueError`: a bad `COURSE_DEVICE` (see `forced_device`).
        `ProfileUnavailableError`: `sd15` with no device asked for and no CUDA GPU.
    """
    if device is None:
        device = forced_device()
    if profile == "toy":
        return device if device is not None else gpu.pick_device()
    if device is None:
        if torch.cuda.is_available():
            return "cuda"
        raise ProfileUnavailableError(tr(
            "The sd15 profile needs a CUDA GPU, and there is none here. What to do:\n"
            "- use the toy profile: profile='toy', or set {profile_var}=toy (runs on any CPU, offline);\n"
            "- in Colab: Runtime > Change runtime type > T4 GPU, then run the notebook again from the top;\n"
            "- to run Stable Diffusion on the CPU anyway (minutes per image), set {device_var}=cpu "
            "or pass device='cpu'.",
            profile_var=PROFILE_ENV_VAR, device_var=DEVICE_ENV_VAR,
        ))
    if torch.device(device).type == "cpu":
        warnings.warn(tr("sd15 runs on the CPU, as asked: expect minutes per image (a CUDA GPU takes seconds)."),
                      SlowDeviceWarning, stacklevel=3)
    return device


# --------------------------------------------------------------------------
# Helpers for the loaders
# --------------------------------------------------------------------------


def toy_model_built() -> bool:
    """`True` if the toy pipeline and the toy CLIP are both in the package."""
    return (TOY_SD_DIR / "model_index.json").is_file() and (TOY_CLIP_DIR / "config.json").is_file()


def diffusers_dtype_kwarg(dtype: torch.dtype) -> dict:
    r"""
    The keyword that sets a diffusers model's dtype in `from_pretrained`: `dtype=`
    from diffusers 0.40 on, `torch_dtype=` before (Colab had 0.39; 0.40+ warns
    that `torch_dtype` is deprecated).

    Returns:
        `dict`: `{"dtype": dtype}` or `{"torch_dtype": dtype}`, to pass as `**kwargs`.
    """
    from packaging.version import Version

    new_enough = Version(metadata.version("diffusers")).release >= (0, 40)
    return {"dtype": dtype} if new_enough else {"torch_dtype": dtype}


@contextmanager
def _quiet_loading():
    """Hide diffusers' and transformers' loading noise: progress bars (local files load in a blink)
    and warnings meant for library developers, such as transformers' "requires torchvision"
    notice (its advice, followed, can replace the pinned torch). Errors still show."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    saved = [(lib, lib.is_progress_bar_enabled(), lib.get_verbosity())
             for lib in (diffusers_logging, transformers_logging)]
    for lib, _, _ in saved:
        lib.disable_progress_bar()
        lib.set_verbosity_error()
    try:
        yield
    finally:
        for lib, bar_on, verbosity in saved:
            lib.set_verbosity(verbosity)
            if bar_on:
                lib.enable_progress_bar()


def _require_toy(path: Path, what: str) -> Path:
    if not path.exists():
        raise ToyModelNotBuiltError(tr(
            "The toy model is not built yet: {what} is missing ({path}). "
            "Build it with `{command}` from the repository's root, or reinstall the course package.",
            what=what, path=path, command=BUILD_TOY_COMMAND,
        ))
    return path.parent if path.is_file() else path



def _hub_help(repo: str, err: Exception) -> str:
    first_line = (str(err).strip().splitlines() or [""])[0]
    offline = (
        tr("HF_HUB_OFFLINE is set, so nothing is downloaded: unset it, or download the model once while online.\n")
        if _env_flag("HF_HUB_OFFLINE")
        else ""
    )
    return tr(
        "Could not load {repo!r} from the Hugging Face Hub ({error}: {first_line}).\n"
        "{offline}"
        "What to do:\n"
        "- use the toy profile, which needs no network: profile='toy', or set {var}=toy;\n"
        "- check the network (can this machine open https://huggingface.co?);\n"
        "- if the message mentions 401, 403 or a gated repository, accept the model's licence on its Hub page "
        "and log in: `hf auth login` (older versions: `huggingface-cli login`), or in Colab add an HF_TOKEN secret.",
        repo=repo, error=type(err).__name__, first_line=first_line, offline=offline, var=PROFILE_ENV_VAR,
    )


def _from_hub(loader, repo: str, **kwargs):
    """`loader.from_pretrained(repo, **kwargs)`, turning a loading failure into a clear error."""
    try:
        return loader.from_pretrained(repo, **kwargs)
    except OSError as err:  # every download and file error in diffusers/transformers/huggingface_hub
        raise ProfileUnavailableError(_hub_help(repo, err)) from None


def _place_on(model, device, plan: gpu.MemoryPlan | None = None):
    """Move a model or pipeline to `device` (following `plan` for pipelines); a clear error when the GPU is full."""
    try:
        if plan is None:
            return model.to(device)
        return gpu.apply_memory_plan(model, plan, device)
    except torch.cuda.OutOfMemoryError:
        raise ProfileUnavailableError(tr(
            "The GPU ran out of memory while loading onto {device}. What to do:\n"
            "- free what earlier cells loaded: `del pipe` (and other models), then `utils.gpu.free_memory()`;\n"
            "- in Colab: Runtime > Restart session, then run only this notebook;\n"
            "- use the toy profile: set {var}=toy.",
            device=device, var=PROFILE_ENV_VAR,
        )) from None


# --------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------


def load_pipeline(
    profile: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
):
    r"""
    Load the profile's text-to-image `StableDiffusionPipeline`, on its device, ready to call.

    The pipeline keeps its safety checker. Its progress bar is off (so a
    notebook's output stays the same from run to run). On a CUDA GPU the
    memory switches of `utils.gpu.plan_memory` are applied.

    Args:
        profile (`str`, *optional*):
            `"toy"`, `"sd15"` or `"auto"`; `None` reads `COURSE_PROFILE` (see `resolve_profile`).
        device (`str` or `torch.device`, *optional*):
            Defaults to `COURSE_DEVICE` if set, else `utils.gpu.pick_device()` for `toy` and `"cuda"` for `sd15`
            (see `resolve_device`).
        dtype (`torch.dtype`, *optional*):
            Defaults to `default_dtype(profile, device)`: float32 for `toy`, fp16 on CUDA for `sd15`.

    Returns:
        `StableDiffusionPipeline`

    Raises:
        `ValueError`: unknown profile.
        `ToyModelNotBuiltError`: `toy`, but its files are not in the package yet.
        `ProfileUnavailableError`: `sd15` without a GPU, without the Hub, or without enough GPU memory.

    Example:

    ```py
    >>> pipe = utils.models.load_pipeline("toy")
    >>> image = pipe("a red circle", generator=utils.gpu.make_generator(0)).images[0]
    ```
    """
    with _quiet_loading():
        from diffusers import StableDiffusionPipeline

    name, _ = resolve_profile(profile)
    if name == "toy":
        source = _require_toy(TOY_SD_DIR / "model_index.json", tr("the toy pipeline"))
        device = resolve_device(name, device)
        with _quiet_loading():
            pipe = StableDiffusionPipeline.from_pretrained(
                source,
                **diffusers_dtype_kwarg(dtype or default_dtype(name, device)),
                use_safetensors=True,
                local_files_only=True,
            )
    else:
        device = resolve_device(name, device)
        dtype = dtype or default_dtype(name, device)
        half = dtype in (torch.float16, torch.bfloat16)
        pipe = _from_hub(
            StableDiffusionPipeline,
            SD15_PIPELINE_REPO,
            **diffusers_dtype_kwarg(dtype),
            use_safetensors=True,
            variant="fp16" if half else None,  # half-size download when running in half precision
        )
    total_gib = gpu.gpu_memory(device)[0] / gpu.GIB if torch.device(device).type == "cuda" else None
    pipe = _place_on(pipe, device, gpu.plan_memory(total_gib, name))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_clip(
    profile: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
):
    r"""
    Load the profile's CLIP model and processor (for zero-shot attributes and image embeddings).

    `toy`: the toy CLIP trained on the toy world. `sd15`: `openai/clip-vit-large-patch14`.

    Args:
        profile (`str`, *optional*):
            `"toy"`, `"sd15"` or `"auto"`; `None` reads `COURSE_PROFILE`.
        device (`str` or `torch.device`, *optional*):
            Defaults to `COURSE_DEVICE` if set, else `utils.gpu.pick_device()` for `toy` and `"cuda"` for `sd15`
            (see `resolve_device`).
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
            Similarities are compared to a few decimals: keep float32 unless memory is short.

    Returns:
        `tuple[CLIPModel, CLIPProcessor]`: the model (in eval mode, on `device`) and its processor.

    Raises:
        `ValueError`, `ToyModelNotBuiltError`, `ProfileUnavailableError`: as for `load_pipeline`.

    Example:

    ```py
    >>> model, processor = utils.models.load_clip("toy")
    >>> inputs = processor(text=["a red circle"], return_tensors="pt", padding=True)
    ```
    """
    with _quiet_loading():
        from transformers import CLIPModel, CLIPProcessor

    name, _ = resolve_profile(profile)
    if name == "toy":
        source = _require_toy(TOY_CLIP_DIR / "config.json", tr("the toy CLIP"))
        device = resolve_device(name, device)
        with _quiet_loading():
            model = CLIPModel.from_pretrained(source, dtype=dtype, use_safetensors=True, local_files_only=True)
            processor = CLIPProcessor.from_pretrained(source, local_files_only=True)
    else:
        device = resolve_device(name, device)
        model = _from_hub(CLIPModel, SD15_CLIP_REPO, dtype=dtype, use_safetensors=True)
        processor = _from_hub(CLIPProcessor, SD15_CLIP_REPO)
    return _place_on(model, device).eval(), processor


def load_safety_checker(
    profile: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
):
    r"""
    Load the profile's `StableDiffusionSafetyChecker` and the `CLIPImageProcessor` that prepares its input.

    `toy`: the checker inside the toy pipeline folder, whose concepts are toy
    glyphs. `sd15`: `CompVis/stable-diffusion-safety-checker`, the checker that
    Stable Diffusion v1.x pipelines run.

    Args:
        profile (`str`, *optional*):
            `"toy"`, `"sd15"` or `"auto"`; `None` reads `COURSE_PROFILE`.
        device (`str` or `torch.device`, *optional*):
            Defaults to `COURSE_DEVICE` if set, else `utils.gpu.pick_device()` for `toy` and `"cuda"` for `sd15`
            (see `resolve_device`).
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
            The checker rounds its scores to 3 decimals: float32 keeps them exact.

    Returns:
        `tuple[StableDiffusionSafetyChecker, CLIPImageProcessor]`: the checker (eval mode, on `device`) and its processor.

    Raises:
        `ValueError`, `ToyModelNotBuiltError`, `ProfileUnavailableError`: as for `load_pipeline`.

    Example:

    ```py
    >>> checker, processor = utils.models.load_safety_checker("toy")
    >>> clip_input = processor(images, return_tensors="pt").pixel_values
    ```
    """
    with _quiet_loading():
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from transformers import CLIPImageProcessor

    name, _ = resolve_profile(profile)
    if name == "toy":
        checker_dir = _require_toy(TOY_SD_DIR / "safety_checker" / "config.json", tr("the toy safety checker"))
        processor_dir = _require_toy(TOY_SD_DIR / "feature_extractor", tr("the toy feature extractor"))
        device = resolve_device(name, device)
        with _quiet_loading():
            checker = StableDiffusionSafetyChecker.from_pretrained(
                checker_dir, dtype=dtype, use_safetensors=True, local_files_only=True
            )
            processor = CLIPImageProcessor.from_pretrained(processor_dir, local_files_only=True)
    else:
        device = resolve_device(name, device)
        checker = _from_hub(StableDiffusionSafetyChecker, SD15_SAFETY_CHECKER_REPO, dtype=dtype, use_safetensors=True)
        processor = _from_hub(CLIPImageProcessor, SD15_SAFETY_CHECKER_REPO)
    return _place_on(checker, device).eval(), processor


# --------------------------------------------------------------------------
# Preflight: the report at the top of every notebook
# --------------------------------------------------------------------------

_WHERE = {"colab": "Google Colab", "kaggle": "Kaggle"}  # and "local": this computer, said in the learner's language


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclass
class Preflight:
    r"""What `preflight` found. Memory sizes are in GiB; GPU fields are `None` without a GPU."""

    where: str
    python: str
    torch: str
    diffusers: str
    transformers: str
    device: str
    gpu_name: str | None
    gpu_total_gib: float | None
    gpu_free_gib: float | None
    dtype: str
    profile: str
    profile_reason: str
    auto_profile: str
    auto_reason: str
    memory_plan: gpu.MemoryPlan
    device_reason: str = ""
    """Why `device` is not the one found here: `COURSE_DEVICE` forced it, or its value is wrong (`"ERROR: ..."`)."""
    device_forced: bool = False
    """True when `COURSE_DEVICE` chose `device`."""


def preflight(verbose: bool = True) -> Preflight:
    r"""
    Report where this notebook runs, on what, and which profile it will use.

    Prints (and returns) where you are (Colab, Kaggle, local), the versions of
    Python, torch, diffusers and transformers, the device, the GPU and its
    memory, the dtype, the profile in use and the one `auto` would pick, each
    with the reason, and the memory plan. It downloads nothing; only on a
    machine with a CUDA GPU does it ask the Hugging Face Hub whether it is
    reachable (a few seconds at most).

    Args:
        verbose (`bool`, *optional*, defaults to `True`):
            Print the report.

    Returns:
        `Preflight`: the same facts as fields.

    A `COURSE_PROFILE` that names no profile does not stop the report: it says so, with the
    valid names, in the `Profile` line (`report.profile` is then `"invalid"`), and every
    loader raises the same message until it is fixed.

    Example:

    ```py
    >>> report = utils.preflight()
    Where:         this computer (not Colab or Kaggle)
    ...
    >>> report.profile
    'toy'
    ```
    """
    found = gpu.pick_device()
    gpu_name = total_gib = free_gib = None
    if found == "cuda":
        gpu_name = torch.cuda.get_device_name(0)
        total, free = gpu.gpu_memory("cuda")
        total_gib, free_gib = total / gpu.GIB, free / gpu.GIB
    elif found == "mps":
        gpu_name = "Apple GPU (MPS)"
    try:
        forced = forced_device()
    except (ValueError, ProfileUnavailableError) as err:  # a bad COURSE_DEVICE: report it, as for the profile
        forced, device_reason = None, f"ERROR: {err}"
    else:
        device_reason = f"forced by {DEVICE_ENV_VAR}={forced}" if forced else ""
    device = forced or found
    on_cuda = torch.device(device).type == "cuda"

    has_cuda = found == "cuda"
    auto_profile, auto_reason = choose_auto_profile(has_cuda, hub_ok=has_cuda and hub_reachable())
    try:
        profile, profile_reason = resolve_profile()
    except ValueError as err:  # a typo in COURSE_PROFILE: report it, do not fail the first cell
        profile, profile_reason = "invalid", f"ERROR: {err}"
    report = Preflight(
        where=gpu.where_am_i(),
        python=platform.python_version(),
        torch=torch.__version__,
        diffusers=_version("diffusers"),
        transformers=_version("transformers"),
        device=device,
        gpu_name=gpu_name,
        gpu_total_gib=total_gib,
        gpu_free_gib=free_gib,
        dtype=str(default_dtype(profile if profile in PROFILES else auto_profile, device)).removeprefix("torch."),
        profile=profile,
        profile_reason=profile_reason,
        auto_profile=auto_profile,
        auto_reason=auto_reason,
        memory_plan=gpu.plan_memory(total_gib if on_cuda else None, profile if profile in PROFILES else auto_profile),
        device_reason=device_reason,
        device_forced=bool(forced),
    )
    if verbose:
        print(format_preflight(report))
    return report


def format_preflight(report: Preflight) -> str:
    """The text `preflight` prints for `report`."""
    if report.gpu_total_gib is not None:
        gpu = tr("{name}, {total:.1f} GiB total, {free:.1f} GiB free",
                 name=report.gpu_name, total=report.gpu_total_gib, free=report.gpu_free_gib)
    elif report.gpu_name is not None:
        gpu = tr("{name} (the toy profile can use it; sd15 needs a CUDA GPU)", name=report.gpu_name)
    elif report.profile == "toy":
        gpu = tr("none: there is no GPU here, so the toy profile will be used (a tiny model, on the CPU, offline)")
    else:
        gpu = tr("none: there is no GPU here")
    lines = [
        pad(tr("Where:"), 15) + (tr("this computer (not Colab or Kaggle)") if report.where == "local"
                                 else _WHERE.get(report.where, report.where)),
        f"Python:        {report.python}",
        f"torch:         {report.torch}",
        f"diffusers:     {report.diffusers}",
        f"transformers:  {report.transformers}",
        f"{pad(tr('Device:'), 15)}{report.device}" + (f" ({report.device_reason})" if report.device_reason else ""),
        f"GPU:           {gpu}",
        f"dtype:         {report.dtype}",
        pad(tr("Profile:"), 15) + (f"{report.profile} ({report.profile_reason})" if report.profile != "invalid"
                                   else report.profile_reason),
        f"{pad(tr('auto picks:'), 15)}{report.auto_profile} ({report.auto_reason})",
        f"{pad(tr('Memory plan:'), 15)}{', '.join(report.memory_plan.switches()) or tr('no switches')} "
        f"({report.memory_plan.reason})",
    ]
    if report.profile == "sd15" and report.device == "cpu" and report.device_forced:
        lines.append(pad(tr("Warning:"), 15) + tr("sd15 on the CPU ({var}=cpu) runs, but takes minutes per image.",
                                                  var=DEVICE_ENV_VAR))
    elif report.profile == "sd15" and not report.device.startswith("cuda"):
        lines.append(pad(tr("Warning:"), 15) + tr(
            "the sd15 profile needs a CUDA GPU and there is none: loading it will fail. "
            "Use the toy profile (COURSE_PROFILE=toy), or in Colab switch the runtime to a GPU "
            "(or set {var}=cpu to run it slowly on the CPU).",
            var=DEVICE_ENV_VAR,
        ))
    return "\n".join(lines)
