"""Checks for the exercises of `notebooks/02_diffusion_inference.ipynb`.

Each check judges what the learner wrote by what it does: a function is called on fresh
random tensors, a prediction is compared with a value recomputed here. It says what is
wrong without giving the answer away.
"""

from __future__ import annotations

import numpy as np
import torch

from . import Verdict, is_placeholder, not_yet, right, wrong
from .. import inference


def _close(a, b) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-4)


def check_guidance(guidance_fn) -> Verdict:
    r"""
    Exercise: write classifier-free guidance, `guidance_fn(noise_pred_uncond, noise_pred_text, guidance_scale)`.

    The function is called on random predictions at several scales and compared with the
    right combination; common mistakes are recognised and named.
    """
    if is_placeholder(guidance_fn) or not callable(guidance_fn):
        return not_yet("define my_guidance(noise_pred_uncond, noise_pred_text, guidance_scale) and return the guided prediction.")
    generator = torch.Generator().manual_seed(2)
    uncond = torch.randn(2, 4, 8, 8, generator=generator)
    text = torch.randn(2, 4, 8, 8, generator=generator)
    scales = [0.0, 1.0, 3.0, 7.5]
    try:
        results = [guidance_fn(uncond.clone(), text.clone(), s) for s in scales]
    except Exception as err:  # the learner's code: report any error in words
        return wrong(f"calling your function raised {type(err).__name__}: {err}")
    if any(is_placeholder(r) for r in results):
        return not_yet("replace the `...` in the body of my_guidance with the guided prediction.")
    if not all(isinstance(r, torch.Tensor) and r.shape == uncond.shape for r in results):
        return wrong(f"it should return one tensor of the predictions' shape {tuple(uncond.shape)}.")
    if all(_close(r, inference.guidance(uncond, text, s)) for r, s in zip(results, scales)):
        return right("At scale 0 it gives the unconditional prediction, at 1 the prompt's, and beyond 1 it "
                     "moves further along the direction the prompt adds.")
    mistakes = [
        (lambda s: text + s * (uncond - text),
         "your guidance combines the predictions in the wrong order: it starts from the prompt's prediction "
         "and moves towards the unconditional one."),
        (lambda s: uncond + s * (uncond - text),
         "your guidance pushes away from the prompt: the difference is taken the wrong way round."),
        (lambda s: text + s * (text - uncond),
         "your guidance starts from the wrong prediction: at guidance_scale 0 it should give the "
         "unconditional prediction, and yours does not."),
        (lambda s: uncond + (s - 1) * (text - uncond),
         "your scale is off by one: that is the w of Ho & Salimans' paper; diffusers' guidance_scale "
         "is defined so that a scale of 1 gives the prompt's own prediction."),
        (lambda s: s * (text - uncond),
         "your guidance keeps only the difference: it has lost the prediction it should start from."),
    ]
    for formula, message in mistakes:
        if all(_close(r, formula(s)) for r, s in zip(results, scales)):
            return wrong(message)
    if all(_close(r, results[0]) for r in results[1:]):
        return wrong("your result does not change with guidance_scale.")
    return wrong("at guidance_scale 0 the result should be the unconditional prediction and at 1 the prompt's; "
                 "check yours at those two scales first.")


_CHOICES = {"unconditional": "unconditional", "uncond": "unconditional", "noise_pred_uncond": "unconditional",
            "text": "text", "prompt": "text", "noise_pred_text": "text", "neither": "neither"}


def check_guidance_one(prediction) -> Verdict:
    r"""
    Exercise: predict which prediction guidance at `guidance_scale=1.0` returns:
    `"unconditional"`, `"text"` or `"neither"`. The answer is recomputed here with
    `utils.inference.guidance` on random tensors.
    """
    if is_placeholder(prediction):
        return not_yet('set prediction_at_1 to "unconditional", "text" or "neither".')
    choice = _CHOICES.get(str(prediction).strip().lower()) if isinstance(prediction, str) else None
    if choice is None:
        return wrong(f'answer with one of "unconditional", "text" or "neither" (you gave {prediction!r}).')
    generator = torch.Generator().manual_seed(3)
    uncond, text = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    guided = inference.guidance(uncond, text, 1.0)
    truth = "text" if _close(guided, text) else "unconditional" if _close(guided, uncond) else "neither"
    if choice == truth:
        return right("At 1.0 the unconditional prediction cancels out. The pipeline then skips it altogether "
                     "(it guides only when guidance_scale > 1): one UNet pass per image instead of two.")
    return wrong("put guidance_scale = 1 into the formula and simplify it.")


def check_latent_shape(answer, pipe, batch_size: int = 4, height: int = 48, width: int = 64) -> Verdict:
    r"""
    Exercise: predict the shape of the starting latents for `batch_size` images of
    `height` x `width` pixels on `pipe`. The right shape is computed from the pipeline's config.
    """
    if is_placeholder(answer):
        return not_yet("set latent_shape to a tuple of four numbers: (batch, channels, height, width) of the latents.")
    try:
        answer = tuple(int(v) for v in answer)
    except (TypeError, ValueError):
        return wrong(f"give a tuple of four whole numbers, e.g. (1, 2, 3, 4); you gave {answer!r}.")
    f, channels = pipe.vae_scale_factor, pipe.unet.config.in_channels
    expected = (batch_size, channels, height // f, width // f)
    if answer == expected:
        return right(f"Check it against prepare_latents: the VAE of this pipeline shrinks each side {f} times.")
    if len(answer) != 4:
        return wrong(f"latents have four dimensions (batch, channels, height, width); your tuple has {len(answer)}.")
    if answer[0] != batch_size:
        hint = (" The doubling for guidance happens only at the UNet's input." if answer[0] == 2 * batch_size else "")
        return wrong(f"the first dimension is the number of images asked for.{hint}")
    if answer[1] != channels:
        return wrong("the channels are the latent space's, not the image's RGB: read pipe.unet.config.in_channels.")
    if answer[2:] == (height, width):
        return wrong("those are the image's height and width in pixels; the latents are smaller.")
    if answer[2:] == (width // f, height // f):
        return wrong("height and width are swapped: PyTorch puts the height first.")
    return wrong("the latents' height and width are the image's divided by the VAE's scale factor: "
                 "read it from pipe.vae_scale_factor, not from Stable Diffusion's paper.")


def check_same_generator(prediction, pipe) -> Verdict:
    r"""
    Exercise: predict whether two calls of `pipe` that share one generator object, seeded once,
    give the same images (`True` or `False`). The check runs the two calls to find out.
    """
    if is_placeholder(prediction):
        return not_yet("set same_images to True or False.")
    if not isinstance(prediction, (bool, np.bool_)):
        return wrong(f"answer True or False (you gave {prediction!r}).")
    generator = torch.Generator().manual_seed(0)
    first = pipe("a red circle", num_inference_steps=2, generator=generator, output_type="np").images
    second = pipe("a red circle", num_inference_steps=2, generator=generator, output_type="np").images
    truth = bool(np.array_equal(first, second))
    if bool(prediction) == truth:
        return right("A generator is a stream of random numbers: the second call goes on where the first "
                     "stopped. Seed it again (or make a new one) before each call you want to repeat.")
    return wrong("think of a generator as a stream of random numbers: where does the second call start reading?")


def _euler_ancestral_loop(pipe, step_fn, prompt, steps, seed):
    """The hand loop with `step_fn(scheduler, noise_pred, t, latents, generator)` as its scheduler step."""
    generator = torch.Generator().manual_seed(seed)
    prompt_embeds, negative_prompt_embeds = inference.encode_prompt(pipe, [prompt])
    embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
    pipe.scheduler.set_timesteps(steps, device=pipe.device)
    latents = inference.prepare_latents(pipe, 1, generator=generator)
    with torch.no_grad():
        for t in pipe.scheduler.timesteps:
            model_input = pipe.scheduler.scale_model_input(torch.cat([latents] * 2), t)
            noise_pred = pipe.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
            noise_pred = inference.guidance(*noise_pred.chunk(2), 7.5)
            latents = step_fn(pipe.scheduler, noise_pred, t, latents, generator)
            if not isinstance(latents, torch.Tensor):
                return latents
    return inference.decode_latents(pipe, latents).permute(0, 2, 3, 1).cpu().numpy()


def check_ancestral_step(step_fn, pipe, prompt: str = "a red circle", steps: int = 4, seed: int = 0) -> Verdict:
    r"""
    Exercise: write the scheduler step, `step_fn(scheduler, noise_pred, t, latents, generator)`,
    so that the hand loop with `EulerAncestralDiscreteScheduler` gives exactly the images of `pipe(...)`.

    The check swaps in Euler ancestral, runs the hand loop with `step_fn` and `pipe(...)` for the
    same seed, compares the pixels, and puts the pipeline's scheduler back.
    """
    from diffusers import EulerAncestralDiscreteScheduler

    if is_placeholder(step_fn) or not callable(step_fn):
        return not_yet("define my_step(scheduler, noise_pred, t, latents, generator) and return the new latents.")
    original = pipe.scheduler
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(original.config)
    try:
        with torch.random.fork_rng():  # the global random state, seeded here, is put back afterwards
            torch.manual_seed(seed)
            try:
                images = _euler_ancestral_loop(pipe, step_fn, prompt, steps, seed)
            except Exception as err:  # the learner's code: report any error in words
                return wrong(f"the loop with your step raised {type(err).__name__}: {err}")
            torch.manual_seed(seed)
            without_generator = _euler_ancestral_loop(
                pipe, lambda s, n, t, x, g: s.step(n, t, x, return_dict=False)[0], prompt, steps, seed)
        if is_placeholder(images):
            return not_yet("replace the `...` in the body of my_step with the new latents.")
        if not isinstance(images, np.ndarray):
            return wrong(f"my_step should return the new latents as a tensor; it returned a {type(images).__name__} "
                         "(a scheduler's output object holds them in .prev_sample).")
        reference = pipe(prompt, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                         output_type="np").images
        difference = float(np.abs(images - reference).max())
        if difference <= 1e-5:
            return right(f"Max abs pixel difference from pipe(...): {difference:.1e}. The pipeline hands its "
                         "generator to every step of a scheduler that adds noise.")
        if np.array_equal(images, without_generator):
            return wrong(f"the images differ from pipe(...) by up to {difference:.3f}. Euler ancestral adds fresh "
                         "noise at every step, and yours comes from PyTorch's global random state: where does "
                         "the pipeline's come from?")
        return wrong(f"the images differ from pipe(...) by up to {difference:.3f}: compare your step, line by line, "
                     "with the scheduler step of the loop written above.")
    finally:
        pipe.scheduler = original
