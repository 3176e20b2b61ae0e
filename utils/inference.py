"""Diffusion inference by hand: the parts of `StableDiffusionPipeline.__call__`, and the course's generation helper.

Taught in `notebooks/02_diffusion_inference.ipynb`, which writes the sampling loop in
cells first and then shows that it equals `sample` here and `pipe(...)`. Later
notebooks reuse the pieces (`encode_prompt`, `prepare_latents`, `guidance`,
`decode_latents`) when they change one step of the loop.

The loop, as `StableDiffusionPipeline` runs it (one UNet call per step on a batch of
2B: unconditional and prompt; Ho & Salimans, "Classifier-Free Diffusion Guidance",
arXiv 2207.12598, eq. 6):

```
prompt_embeds, negative_prompt_embeds = encode_prompt(pipe, prompts)   # (B, L, D) each
pipe.scheduler.set_timesteps(num_inference_steps)                    # before the latents
latents = prepare_latents(pipe, B, generator=generator)              # (B, 4, H/f, W/f)
for t in pipe.scheduler.timesteps:
    noise_pred_uncond, noise_pred_text = unet([latents, latents], t, [negative, prompt]).chunk(2)
    noise_pred = guidance(noise_pred_uncond, noise_pred_text, guidance_scale)
    latents = pipe.scheduler.step(noise_pred, t, latents).prev_sample
images = decode_latents(pipe, latents)                               # (B, 3, H, W) in [0, 1]
```
"""

from __future__ import annotations

import inspect
import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from . import gpu, toyworld
from .models import TOY_SD_DIR


def _as_prompt_list(prompt) -> list[str]:
    """A prompt or a list of prompts, as a list; a clear error for anything else."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, (list, tuple)):
        if len(prompt) == 0:
            raise ValueError('prompt is an empty list: give at least one prompt, e.g. ["a red circle"].')
        not_strings = [p for p in prompt if not isinstance(p, str)]
        if not_strings:
            raise TypeError(f"every prompt must be a string; got {not_strings[0]!r} ({type(not_strings[0]).__name__}).")
        return list(prompt)
    raise TypeError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}.")


def _tokenize(pipe, prompts: list[str]) -> torch.Tensor:
    """Token ids `(B, L)`, padded and cut to the tokenizer's `model_max_length`, as the pipeline does."""
    return pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                          truncation=True, return_tensors="pt").input_ids


@torch.no_grad()
def encode_prompt(pipe, prompts, negative_prompt=None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    Turn prompts into the text encoder's hidden states, and the same for the unconditional side.

    As `StableDiffusionPipeline.encode_prompt` does it (without LoRA, textual inversion or
    `clip_skip`): pad every prompt to `pipe.tokenizer.model_max_length` tokens, cut longer
    ones, and take the text encoder's last hidden state. The unconditional side encodes the
    empty prompt `""`, or the negative prompt when one is given.

    Args:
        pipe (`StableDiffusionPipeline`): its `tokenizer` and `text_encoder` are used.
        prompts (`str` or `list[str]`): one prompt per image.
        negative_prompt (`str` or `list[str]`, *optional*): one for all images, or one per prompt.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: `prompt_embeds` and `negative_prompt_embeds`,
        each `(B, L, D)`: B prompts, L = `model_max_length` tokens, D = the encoder's width.

    Raises:
        `ValueError`: an empty list of prompts, or a list of negative prompts of another length.

    Example:

    ```py
    >>> prompt_embeds, negative_prompt_embeds = encode_prompt(pipe, ["a red circle"])
    >>> prompt_embeds.shape  # toy profile
    torch.Size([1, 32, 64])
    ```
    """
    prompts = _as_prompt_list(prompts)
    if negative_prompt is None:
        negatives = [""] * len(prompts)
    elif isinstance(negative_prompt, str):
        negatives = [negative_prompt] * len(prompts)
    else:
        negatives = _as_prompt_list(negative_prompt)
        if len(negatives) != len(prompts):
            raise ValueError(f"negative_prompt has {len(negatives)} entries but there are {len(prompts)} prompts: "
                             "give one negative prompt for all, or exactly one per prompt.")
    device, dtype = pipe.device, pipe.text_encoder.dtype
    prompt_embeds = pipe.text_encoder(_tokenize(pipe, prompts).to(device))[0].to(dtype)
    negative_prompt_embeds = pipe.text_encoder(_tokenize(pipe, negatives).to(device))[0].to(dtype)
    return prompt_embeds, negative_prompt_embeds


def default_size(pipe) -> tuple[int, int]:
    """The pipeline's native `(height, width)` in pixels: the UNet's sample size times the VAE's scale factor."""
    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else size
    return height * pipe.vae_scale_factor, width * pipe.vae_scale_factor


def prepare_latents(pipe, batch_size: int, height: int | None = None, width: int | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    r"""
    Draw the starting noise: Gaussian latents scaled by the scheduler's `init_noise_sigma`.

    Call `pipe.scheduler.set_timesteps(...)` first, as the pipeline does: for some
    schedulers (Euler, ...) `init_noise_sigma` depends on the timesteps.

    Args:
        pipe (`StableDiffusionPipeline`): its UNet, VAE scale factor and scheduler are used.
        batch_size (`int`): how many images.
        height, width (`int`, *optional*): in pixels; default to `default_size(pipe)`.
        generator (`torch.Generator`, *optional*): where the noise comes from. The noise is
            drawn on the generator's device (a CPU generator gives the same noise on every
            machine) and then moved to the pipeline's device.

    Returns:
        `torch.Tensor`: `(batch_size, C, height // f, width // f)`, C = `pipe.unet.config.in_channels`,
        f = `pipe.vae_scale_factor`.

    Example:

    ```py
    >>> pipe.scheduler.set_timesteps(20)
    >>> prepare_latents(pipe, 8, generator=torch.Generator().manual_seed(0)).shape  # toy profile
    torch.Size([8, 4, 16, 16])
    ```
    """
    from diffusers.utils.torch_utils import randn_tensor

    default_height, default_width = default_size(pipe)
    height, width = height or default_height, width or default_width
    f = pipe.vae_scale_factor
    shape = (batch_size, pipe.unet.config.in_channels, height // f, width // f)
    latents = randn_tensor(shape, generator=generator, device=pipe.device, dtype=pipe.text_encoder.dtype)
    return latents * pipe.scheduler.init_noise_sigma


def guidance(noise_pred_uncond: torch.Tensor, noise_pred_text: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    r"""
    Classifier-free guidance: start from the unconditional prediction and move `guidance_scale`
    times along the direction the prompt adds.

    noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)

    (Ho & Salimans, arXiv 2207.12598, eq. 6, with w = guidance_scale - 1.) A scale of 1 gives
    the prompt's own prediction, 0 the unconditional one, more than 1 goes beyond the prompt.

    Args:
        noise_pred_uncond (`torch.Tensor`): the UNet's prediction for the empty (or negative) prompt.
        noise_pred_text (`torch.Tensor`): its prediction for the prompt; same shape.
        guidance_scale (`float`): how far to go.

    Returns:
        `torch.Tensor`: the guided prediction, same shape.
    """
    return noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)


@torch.no_grad()
def decode_latents(pipe, latents: torch.Tensor) -> torch.Tensor:
    r"""
    Decode latents with the VAE into images with values in [0, 1].

    Args:
        pipe (`StableDiffusionPipeline`): its VAE is used.
        latents (`torch.Tensor`): `(B, C, h, w)`.

    Returns:
        `torch.Tensor`: `(B, 3, h * f, w * f)`, float, in [0, 1].
    """
    image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]  # in [-1, 1]
    return (image / 2 + 0.5).clamp(0, 1)


def scheduler_step_kwargs(scheduler, generator=None, eta: float = 0.0) -> dict:
    """The extra arguments `scheduler.step` takes: `generator` for schedulers that add noise
    (Euler ancestral, DDPM, ...) and `eta` for DDIM; as the pipeline's `prepare_extra_step_kwargs`."""
    accepted = inspect.signature(scheduler.step).parameters
    return {name: value for name, value in (("eta", eta), ("generator", generator)) if name in accepted}


def _safety_check(pipe, images: torch.Tensor):
    """Run the pipeline's safety checker on images in [0, 1]; flagged images become black.
    Notebook 03 opens this step up."""
    if pipe.safety_checker is None:
        return images, None
    pil = pipe.image_processor.numpy_to_pil(pipe.image_processor.pt_to_numpy(images))
    clip_input = pipe.feature_extractor(pil, return_tensors="pt").pixel_values
    return pipe.safety_checker(images=images, clip_input=clip_input.to(pipe.device, pipe.text_encoder.dtype))


def _to_output_type(pipe, images: torch.Tensor, output_type: str):
    if output_type == "pt":
        return images
    array = pipe.image_processor.pt_to_numpy(images)
    return array if output_type == "np" else pipe.image_processor.numpy_to_pil(array)


@torch.no_grad()
def sample(pipe, prompt, negative_prompt=None, height: int | None = None, width: int | None = None,
           num_inference_steps: int = 50, guidance_scale: float = 7.5, generator=None, output_type: str = "pil"):
    r"""
    Generate images with the sampling loop written out: the same numbers as `pipe(...)`.

    Encode the prompts, set the timesteps, draw the latents, then per timestep: one UNet
    call on [unconditional, prompt], classifier-free guidance, one scheduler step; decode;
    run the safety checker. It works with any scheduler set on `pipe.scheduler`.

    Args:
        pipe (`StableDiffusionPipeline`): the pipeline whose parts are used.
        prompt (`str` or `list[str]`): one prompt per image.
        negative_prompt (`str` or `list[str]`, *optional*): replaces the empty prompt on the unconditional side.
        height, width (`int`, *optional*): in pixels; default to the pipeline's native size.
        num_inference_steps (`int`, *optional*, defaults to 50): denoising steps.
        guidance_scale (`float`, *optional*, defaults to 7.5): classifier-free guidance
            is used when it is above 1, as in the pipeline.
        generator (`torch.Generator`, *optional*): for the starting noise (and the
            scheduler's noise, for ancestral schedulers).
        output_type (`str`, *optional*, defaults to `"pil"`): `"pil"`, `"np"` or `"pt"`.

    Returns:
        `StableDiffusionPipelineOutput`: `images` and `nsfw_content_detected`, as `pipe(...)` returns.

    Example:

    ```py
    >>> out = sample(pipe, "a red circle", num_inference_steps=20, generator=torch.Generator().manual_seed(0))
    >>> ref = pipe("a red circle", num_inference_steps=20, generator=torch.Generator().manual_seed(0))
    >>> np.abs(np.asarray(out.images[0], float) - np.asarray(ref.images[0], float)).max()
    0.0
    ```
    """
    from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput

    prompts = _as_prompt_list(prompt)
    prompt_embeds, negative_prompt_embeds = encode_prompt(pipe, prompts, negative_prompt)
    do_guidance = guidance_scale > 1
    embeds = torch.cat([negative_prompt_embeds, prompt_embeds]) if do_guidance else prompt_embeds  # (2B, L, D)
    pipe.scheduler.set_timesteps(num_inference_steps, device=pipe.device)
    latents = prepare_latents(pipe, len(prompts), height, width, generator)  # (B, C, h, w)
    step_kwargs = scheduler_step_kwargs(pipe.scheduler, generator)
    for t in pipe.scheduler.timesteps:
        model_input = torch.cat([latents] * 2) if do_guidance else latents  # (2B, C, h, w)
        model_input = pipe.scheduler.scale_model_input(model_input, t)
        noise_pred = pipe.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
        if do_guidance:
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = guidance(noise_pred_uncond, noise_pred_text, guidance_scale)
        latents = pipe.scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
    images, nsfw = _safety_check(pipe, decode_latents(pipe, latents))
    return StableDiffusionPipelineOutput(images=_to_output_type(pipe, images, output_type), nsfw_content_detected=nsfw)


# --------------------------------------------------------------------------
# The course's generation helper: pipe(...) with checked input
# --------------------------------------------------------------------------


def is_toy_pipeline(pipe) -> bool:
    """`True` if `pipe` was loaded from the toy model's folder (`utils.models.TOY_SD_DIR`)."""
    source = getattr(pipe, "name_or_path", None)
    return source is not None and Path(str(source)).resolve() == TOY_SD_DIR.resolve()


def _check_size(name: str, value, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0 and value % 8 == 0:
        return int(value)
    try:
        below = max(8, int(value) // 8 * 8)
    except (TypeError, ValueError):
        below = default
    raise ValueError(f"{name} must be a positive multiple of 8 pixels (8, 16, 24, ...); got {value!r}. "
                     f"Nearest valid values: {below} or {below + 8}; this pipeline's native {name} is {default}.")


def cut_text(pipe, prompt: str) -> str:
    r"""
    The part of `prompt` that the text encoder never sees (it reads `pipe.tokenizer.model_max_length`
    tokens, the start and end tokens included); `""` when the whole prompt fits.

    Example:

    ```py
    >>> cut_text(pipe, "a red circle")
    ''
    ```
    """
    ids = pipe.tokenizer(prompt, verbose=False).input_ids  # all of them, with the start and end tokens
    limit = pipe.tokenizer.model_max_length
    if len(ids) <= limit:
        return ""
    return pipe.tokenizer.decode(ids[limit - 1:-1])


def generate(pipe, prompt, negative_prompt=None, height: int | None = None, width: int | None = None,
             num_inference_steps: int = 50, guidance_scale: float = 7.5, seed: int = 0,
             num_images_per_prompt: int = 1, output_type: str = "pil", allow_truncation: bool = True, **kwargs):
    r"""
    `pipe(...)`, with its input checked first and its seed made explicit: the course's way to generate.

    What it adds to `pipe(...)`:

    - clear errors for input that `pipe(...)` handles badly: an empty prompt list (an
      `IndexError` deep inside), zero steps (a `ZeroDivisionError`), negative steps (silently
      accepted), a height or width that is not a multiple of 8 (ignored when the other one is
      missing);
    - a note saying what is cut from a prompt longer than the tokenizer's limit (or, with
      `allow_truncation=False`, an error);
    - on the toy profile, a note naming the words the toy model does not know
      (`utils.toyworld.warn_unknown_words`);
    - a seed instead of a generator: a CPU generator, so the same seed gives the same
      starting noise on every machine.

    Args:
        pipe (`StableDiffusionPipeline`): the pipeline to call.
        prompt (`str` or `list[str]`): the prompt(s).
        negative_prompt (`str` or `list[str]`, *optional*): as for `pipe(...)`.
        height, width (`int`, *optional*): positive multiples of 8; default to the pipeline's native size.
        num_inference_steps (`int`, *optional*, defaults to 50): at least 1.
        guidance_scale (`float`, *optional*, defaults to 7.5): as for `pipe(...)`.
        seed (`int`, *optional*, defaults to 0): the seed of a CPU `torch.Generator`.
        num_images_per_prompt (`int`, *optional*, defaults to 1): at least 1.
        output_type (`str`, *optional*, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` or `"latent"`.
        allow_truncation (`bool`, *optional*, defaults to `True`): cut prompts longer than the
            tokenizer's limit (with a note, as `pipe(...)` does with a warning); `False` raises instead.
        **kwargs: passed on to `pipe(...)` (e.g. `callback_on_step_end`).

    Returns:
        `StableDiffusionPipelineOutput`: what `pipe(...)` returns.

    Raises:
        `ValueError`: an empty prompt list, a size that is not a positive multiple of 8,
            fewer than 1 step or image per prompt, a prompt too long with `allow_truncation=False`.
        `TypeError`: a prompt that is not a string or a list of strings.

    Example:

    ```py
    >>> images = generate(pipe, "a red circle", num_inference_steps=20, seed=0).images
    >>> generate(pipe, "a red circle", height=30)
    ValueError: height must be a positive multiple of 8 pixels ...; got 30. Nearest valid values: 24 or 32; ...
    ```
    """
    prompts = _as_prompt_list(prompt)
    default_height, default_width = default_size(pipe)
    height = _check_size("height", height, default_height)
    width = _check_size("width", width, default_width)
    for name, value in (("num_inference_steps", num_inference_steps), ("num_images_per_prompt", num_images_per_prompt)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1 (1, 2, 3, ...); got {value!r}.")
    if isinstance(negative_prompt, str):
        negative_prompt = [negative_prompt] * len(prompts)  # pipe(...) wants the same type as the prompt
    elif negative_prompt is not None:
        negative_prompt = _as_prompt_list(negative_prompt)
    limit = pipe.tokenizer.model_max_length
    for text in dict.fromkeys(prompts + (negative_prompt or [])):
        cut = cut_text(pipe, text)
        if cut and not allow_truncation:
            raise ValueError(f"{text[:40]!r}... is longer than the {limit} tokens the text encoder reads (start and "
                             f"end included): shorten it by {len(pipe.tokenizer.tokenize(cut))} tokens, or pass "
                             f"allow_truncation=True to cut {cut!r}.")
        if cut:
            print(f"Note: the text encoder reads {limit} tokens (start and end included); "
                  f"this is cut from {text[:40]!r}...: {cut!r}")
        if is_toy_pipeline(pipe):
            toyworld.warn_unknown_words(text)
    with _without_truncation_warning():  # the note above already said what is cut
        return pipe(prompts, negative_prompt=negative_prompt, height=height, width=width,
                    num_inference_steps=int(num_inference_steps), guidance_scale=guidance_scale,
                    num_images_per_prompt=int(num_images_per_prompt), generator=gpu.make_generator(seed),
                    output_type=output_type, **kwargs)


class _DropTruncationWarning(logging.Filter):
    def filter(self, record):
        return not record.getMessage().startswith("The following part of your input was truncated")


@contextmanager
def _without_truncation_warning():
    pipeline_logger = logging.getLogger("diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion")
    drop = _DropTruncationWarning()
    pipeline_logger.addFilter(drop)
    try:
        yield
    finally:
        pipeline_logger.removeFilter(drop)


@contextmanager
def library_messages():
    r"""
    Collect what diffusers and transformers log inside the block (warnings included) instead
    of printing it, so a notebook can show it as ordinary output.

    Yields:
        `list[str]`: filled with the messages when the block ends.

    Example:

    ```py
    >>> with library_messages() as messages:
    ...     pipe("a red circle " * 20, num_inference_steps=2)
    >>> messages[0][:40]
    'The following part of your input was tru'
    ```
    """
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    collect = Collect(level=logging.WARNING)
    saved = []
    for name in ("diffusers", "transformers"):
        library_logger = logging.getLogger(name)
        saved.append((library_logger, library_logger.level, library_logger.handlers[:]))
        library_logger.handlers = [collect]
        library_logger.setLevel(logging.WARNING)
    try:
        yield messages
    finally:
        for library_logger, level, handlers in saved:
            library_logger.handlers = handlers
            library_logger.setLevel(level)
