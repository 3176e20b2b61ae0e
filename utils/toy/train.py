"""Reproduce the course's toy models from the toy world, on a CPU.

    python -m utils.toy.train             # everything: 88 minutes recorded on 2 CPU cores (training.json)
    python -m utils.toy.train --quick     # a few steps of each stage (a smoke test)

Stages, each checked before the next is trained (the toy world is in `utils.toyworld`):
1. a word-level `CLIPTokenizer` whose vocabulary is the toy world's words;
2. a tiny `CLIPModel`, trained contrastively on (image, caption) pairs, half of the images
   in greyscale so that it learns shapes apart from colours;
3. a tiny `AutoencoderKL` (32x32x3 image <-> 4x16x16 latent), whose latents are then
   normalised per channel inside the model, so that diffusion sees zero mean, unit variance;
4. a tiny `UNet2DConditionModel`, conditioned on the toy CLIP's text encoder, trained with
   v-prediction on a zero-terminal-SNR schedule (Lin et al., "Common Diffusion Noise Schedules
   and Sample Steps are Flawed", 2024) and classifier-free guidance dropout; then refined from
   its EMA by a shorter second run at a lower learning rate (`REFINE_LR`), which makes the
   colour-shape pairs held out of training survive safety guidance better;
5. a `StableDiffusionSafetyChecker` built from the toy CLIP's vision tower, whose concept
   embeddings are the toy CLIP's text embeddings of the restricted glyphs and whose thresholds
   are calibrated on held-out images;
then everything is saved as a standard `StableDiffusionPipeline` folder (safetensors only).
Every random choice comes from `--seed`; the seeds and settings are written to `training.json`.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline,
                       UNet2DConditionModel)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                          CLIPTextModel, CLIPTokenizer)

from .. import toyworld
from ..clip import CLIP_MEAN, CLIP_STD, image_embeddings, pixels_for_clip, text_embeddings
from ..models import WEIGHTS_DIR
MAX_TOKENS = 48  # tokenizer.model_max_length; the longest training caption has 39 tokens
# The UNet's captions for classifier-free guidance: this share empty, and this share of unknown
# words only; of the others, `toyworld.P_UNKNOWN` have some unknown words inserted.
P_EMPTY, P_UNKNOWN_ONLY = 0.05, 0.1
# How the UNet stage draws unknown words (its cache key): `toyworld.unknown_word`'s pool. The data
# set's own captions, which CLIP trains on, keep `toyworld.FILLER_WORDS`.
UNKNOWN_WORDS = f"unknown_word pool; p_empty {P_EMPTY}, p_unknown_only {P_UNKNOWN_ONLY}"
REFINE_LR = 3e-4  # the UNet's second run (`--refine-steps`), against 1e-3 for the first
GREY_SHARE = 0.5  # of the images CLIP trains on, the share shown in greyscale (see `train_clip`)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- 1. tokenizer

def _bpe_merges(words: list[str]) -> list[tuple[str, str]]:
    """Learn byte-pair merges until every word is one token (standard BPE, deterministic ties)."""
    pieces = [list(w[:-1]) + [w[-1] + "</w>"] for w in words]
    merges = []
    while any(len(p) > 1 for p in pieces):
        pairs = collections.Counter(pair for p in pieces for pair in zip(p, p[1:]))
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        for p in pieces:
            i = 0
            while i < len(p) - 1:
                if (p[i], p[i + 1]) == best:
                    p[i:i + 2] = [p[i] + p[i + 1]]
                i += 1
    return merges


def build_tokenizer() -> CLIPTokenizer:
    """A `CLIPTokenizer` for which every toy-world word is a single token.

    Other text still tokenizes: any byte is in the vocabulary, so unknown words become pieces.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    merges = _bpe_merges(toyworld.vocabulary())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges,
                         model_max_length=MAX_TOKENS)


def tokenize(tokenizer, texts) -> torch.Tensor:
    """Token ids `(B, MAX_TOKENS)`, padded as the Stable Diffusion pipeline pads them."""
    return tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


# ---------------------------------------------------------------- 2. CLIP

def clip_config(tokenizer) -> CLIPConfig:
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256,
                num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=MAX_TOKENS,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(image_size=toyworld.IMAGE_SIZE, patch_size=8, hidden_size=128,
                  intermediate_size=512, num_hidden_layers=4, num_attention_heads=4)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=64)


def image_processor() -> CLIPImageProcessor:
    side = toyworld.IMAGE_SIZE
    return CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                              image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))


def train_clip(tokenizer, data, steps, batch_size=256, lr=1e-3, grey=GREY_SHARE, seed=0) -> CLIPModel:
    """Contrastive training (CLIP's loss, Radford et al. 2021, eq. in fig. 3), with two changes
    that teach the image tower shape apart from colour:

    - every caption in the batch that is true of an image counts as a match for it (`described`):
      "a circle" matches every circle, not only the image it was written for;
    - a share `grey` of the images is shown in greyscale, with the colour word taken out of its
      caption. Training never shows a purple circle (a held-out pair); without greyscale
      images the image tower learns that purple things are never circles and names the wrong
      shape for 84-91% of held-out-pair images. Greyscale images give no colour to lean on.
    """
    images, attributes, captions = data
    torch.manual_seed(seed)
    model = CLIPModel(clip_config(tokenizer))
    pixels = pixels_for_clip(images)
    image_codes = torch.tensor([_codes(_words_of(a), absent=-2) for a in attributes])
    cache = {}
    def encode(texts):
        for t in set(texts) - cache.keys():
            cache[t] = (tokenize(tokenizer, [t])[0], torch.tensor(_codes(set(t.split()), absent=-1)))
        return torch.stack([cache[t][0] for t in texts]), torch.stack([cache[t][1] for t in texts])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = _warmup_cosine(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(images), (batch_size,), generator=gen)
        x, codes = pixels[idx], image_codes[idx].clone()
        greyed = torch.rand(batch_size, generator=gen) < grey
        x = torch.where(greyed[:, None, None, None], _greyscale(x), x)
        codes[greyed, 0] = -2  # column 0, the colour, is not shown
        texts = [_without_colour(captions[i]) if g else captions[i]
                 for i, g in zip(idx.tolist(), greyed.tolist())]
        ids, caption_codes = encode(texts)
        out = model(input_ids=ids, pixel_values=x)
        match = described(caption_codes, codes).float()  # (captions, images)
        loss = (F.cross_entropy(out.logits_per_image, match.T / match.sum(0)[:, None])
                + F.cross_entropy(out.logits_per_text, match / match.sum(1, keepdim=True))) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"clip step {step}/{steps} loss {loss.item():.3f}")
    return model.eval()


def _greyscale(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    rgb = x * std + mean
    luma = (0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:]).expand_as(rgb)
    return (luma - mean) / std


def _without_colour(caption: str) -> str:
    return " ".join(w for w in caption.split() if w not in toyworld.COLORS)


_GROUPS = [toyworld.COLORS, toyworld.SHAPES, toyworld.SIZES, toyworld.POSITIONS,
           toyworld.BACKGROUNDS, toyworld.ROLES, list(toyworld.CONTEXTS)] + [
           [glyph] for glyph in toyworld.RESTRICTED]


def _words_of(attrs: toyworld.Attributes) -> set:
    return {attrs.color, attrs.shape, attrs.size, attrs.position, attrs.background, attrs.role,
            attrs.context, *attrs.restricted}


def _codes(words: set, absent: int) -> list[int]:
    """For each attribute group, the index of the group's word among `words`, else `absent`
    (-1 for a caption: not named, so anything goes; -2 for an image: not shown)."""
    return [next((i for i, w in enumerate(group) if w in words), absent) for group in _GROUPS]


def described(caption_codes: torch.Tensor, image_codes: torch.Tensor) -> torch.Tensor:
    """`(captions, images)` booleans: True where a caption is true of an image, that is, where
    every attribute the caption names (code >= 0; -1 = not named) the image has."""
    c, i = caption_codes[:, None, :], image_codes[None, :, :]
    return ((c == -1) | (c == i)).all(-1)


def _warmup_cosine(opt, steps, warmup=100):
    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def zero_shot_accuracy(model, tokenizer, images, attributes) -> dict:
    """Zero-shot accuracy of a CLIP on uint8 images whose attributes are known.

    Per attribute: the nearest of "a red shape", "a green shape", ... gives the colour, the
    nearest of "a circle", "a square", ... the shape. Jointly (`joint`): the nearest of the 20
    captions "a red circle", ..., "a purple diamond" gives both. `held_out_pairs`: the
    per-attribute accuracy on the images whose colour-shape pair training never showed.
    """
    image_emb = image_embeddings(model, images)
    held_out = np.array([(a.color, a.shape) in toyworld.HELD_OUT for a in attributes])
    tasks = {"color": [(c,) for c in toyworld.COLORS], "shape": [(s,) for s in toyworld.SHAPES],
             "joint": toyworld.PAIRS}
    result, on_held_out_pairs = {}, {}
    for task, classes in tasks.items():
        keys = ("color", "shape") if task == "joint" else (task,)
        prompts = [toyworld.caption(**dict(zip(keys, values))) for values in classes]
        best = (image_emb @ text_embeddings(model, tokenizer, prompts).T).argmax(1).tolist()
        right = {k: np.array([classes[b][i] == getattr(a, k) for b, a in zip(best, attributes)])
                 for i, k in enumerate(keys)}
        if task == "joint":
            result[task] = {k: float(r.mean()) for k, r in right.items()}
        else:
            result[task] = float(right[task].mean())
            on_held_out_pairs[task] = float(right[task][held_out].mean())
    return {**result, "held_out_pairs": on_held_out_pairs}


# ---------------------------------------------------------------- 3. VAE

def build_vae() -> AutoencoderKL:
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2,
                         block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=16,
                         sample_size=toyworld.IMAGE_SIZE, scaling_factor=1.0)


def pixels_for_vae(images: np.ndarray) -> torch.Tensor:
    """uint8 `(B, H, W, 3)` -> `(B, 3, H, W)` in [-1, 1], as the Stable Diffusion VAE expects."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def train_vae(data, steps, batch_size=64, lr=1e-3, kl_weight=1e-4, seed=0) -> AutoencoderKL:
    """Reconstruction (L1 + MSE) plus a small KL term; then the latents are normalised."""
    images = pixels_for_vae(data[0])
    torch.manual_seed(seed)
    vae = build_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr)
    sched = _warmup_cosine(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    vae.train()
    for step in range(steps):
        x = images[torch.randint(len(images), (batch_size,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        rec = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        loss = rec + kl_weight * posterior.kl().mean() / (x[0].numel())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"vae step {step}/{steps} reconstruction {rec.item():.4f}")
    vae.eval()
    normalise_latents(vae, images[:2048])
    return vae


@torch.no_grad()
def normalise_latents(vae: AutoencoderKL, images: torch.Tensor) -> None:
    """Fold a per-channel affine map into the VAE so its latents have mean 0 and std 1.

    The encoder's `quant_conv` (1x1) outputs the posterior's mean and log-variance; we make it
    output (mean - m) / s and log-variance - 2 log s, and make the decoder's `post_quant_conv`
    undo the map. Decoding is unchanged, and `scaling_factor` stays 1.0, so the standard
    pipeline needs no special case.
    """
    mean = vae.encode(images).latent_dist.mean  # (N, 4, 16, 16)
    m = mean.mean(dim=(0, 2, 3))
    s = mean.std(dim=(0, 2, 3))
    c = m.numel()
    q = vae.quant_conv  # 2c outputs: c means, then c log-variances
    q.weight[:c] /= s.view(c, 1, 1, 1)
    q.bias[:c] = (q.bias[:c] - m) / s
    q.bias[c:] -= 2 * torch.log(s)
    p = vae.post_quant_conv  # input z = z' * s + m
    p.bias += (p.weight[:, :, 0, 0] @ m)
    p.weight *= s.view(1, c, 1, 1)


# ---------------------------------------------------------------- 4. UNet

def build_unet(cross_attention_dim: int) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=toyworld.IMAGE_SIZE // 2, in_channels=4, out_channels=4,
        block_out_channels=(32, 64, 128), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=4, norm_num_groups=16)


def noise_schedule(cls=DDPMScheduler):
    """Stable Diffusion's betas, rescaled to zero terminal SNR, with v-prediction."""
    return cls(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
               beta_schedule="scaled_linear", prediction_type="v_prediction",
               rescale_betas_zero_snr=True, timestep_spacing="trailing", clip_sample=False,
               steps_offset=1)


def train_unet(text_encoder, tokenizer, vae, data, steps, batch_size=128, lr=1e-3,
               p_empty=P_EMPTY, p_unknown_only=P_UNKNOWN_ONLY, ema_decay=0.999,
               seed=0, init: UNet2DConditionModel | None = None) -> UNet2DConditionModel:
    """Denoising loss on v (Salimans & Ho 2022), with the text dropped for classifier-free
    guidance (Ho & Salimans 2022): to "" with probability `p_empty`, and to a caption of unknown
    words (`toyworld.unknown_caption`) with `p_unknown_only`, so such words come to mean what ""
    means. Unknown words, here and inside captions, come from `toyworld.unknown_word`'s large
    pool, which holds toy words inside longer words ("during" holds "ring").
    Starts from `init`'s weights when given (the refinement run), else from a new UNet.
    Returns the EMA of the weights."""
    images, attributes, _ = data
    with torch.no_grad():
        pixels = pixels_for_vae(images)
        dist = [vae.encode(pixels[i:i + 1024]).latent_dist for i in range(0, len(pixels), 1024)]
        lat_mean = torch.cat([d.mean for d in dist])
        lat_std = torch.cat([d.std for d in dist])
    torch.manual_seed(seed)
    unet = (build_unet(text_encoder.config.hidden_size) if init is None
            else copy.deepcopy(init).train().requires_grad_(True))  # the first run returns an EMA without grads
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = noise_schedule()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    sched = _warmup_cosine(opt, steps, warmup=200)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    caption_rng = random.Random(seed)
    unet.train()
    for step in range(steps):
        idx = torch.randint(len(lat_mean), (batch_size,), generator=gen)
        latents = lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)
        captions = [caption_for_unet(tokenizer, attributes[i], rng.random(), caption_rng, p_empty, p_unknown_only)
                    for i in idx.tolist()]
        with torch.no_grad():
            cond = text_encoder(tokenize(tokenizer, captions))[0]  # (B, MAX_TOKENS, 64)
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=gen)
        noisy = scheduler.add_noise(latents, noise, t)
        target = scheduler.get_velocity(latents, noise, t)
        loss = F.mse_loss(unet(noisy, t, cond).sample, target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.lerp_(p, 1 - decay)
        if step % 200 == 0 or step == steps - 1:
            log(f"unet step {step}/{steps} loss {loss.item():.4f}")
    return ema.eval()


def caption_for_unet(tokenizer, attrs, r: float, rng: random.Random, p_empty: float,
                     p_unknown_only: float) -> str:
    """The UNet's caption for an image: "" when `r < p_empty`, unknown words only when
    `r < p_empty + p_unknown_only`, else a training caption (unknown words from the large pool).
    A caption longer than the tokenizer's limit is drawn again: cutting it could drop the words
    that name what the image shows."""
    if r < p_empty:
        return ""
    while True:
        if r < p_empty + p_unknown_only:
            text = toyworld.unknown_caption(rng, toyworld.unknown_word)
        else:
            text = toyworld.training_caption(attrs, rng, toyworld.unknown_word)
        if len(tokenizer(text).input_ids) <= tokenizer.model_max_length:
            return text


# ---------------------------------------------------------------- 5. safety checker

def threshold_between(cos_without: np.ndarray, cos_with: np.ndarray) -> float:
    """A concept's threshold: halfway between the 99th percentile of the cosines of images
    without the concept and the 1st percentile of those of images with it."""
    return float((np.percentile(cos_without, 99) + np.percentile(cos_with, 1)) / 2)


def build_safety_checker(clip: CLIPModel, tokenizer, data) -> tuple:
    """A `StableDiffusionSafetyChecker` whose vision tower and projection are the toy CLIP's.

    Concept i (i < len(RESTRICTED)) is the toy CLIP text embedding of "a shape with a <glyph>";
    special-care concept 0 is that of "a small shape". Each threshold is set halfway between
    the 99th percentile of cosines of images without the concept and the 1st percentile of
    images with it, on held-out images. The checker's layout is fixed (17 concepts, 3 special
    care, as in the real one); unused rows are zero vectors with threshold 1.0: their cosine is
    always 0, so they can never fire.
    """
    images, attributes, _ = data
    checker = StableDiffusionSafetyChecker(clip_config(tokenizer)).eval()
    checker.vision_model.load_state_dict(clip.vision_model.state_dict())
    checker.visual_projection.load_state_dict(clip.visual_projection.state_dict())
    image_emb = image_embeddings(clip, images)
    report = {}
    rows = [("concept", i, glyph, toyworld.caption(restricted=(glyph,)),
             [glyph in a.restricted for a in attributes]) for i, glyph in enumerate(toyworld.RESTRICTED)]
    rows += [("special_care", i, word, toyworld.caption(size=word),
              [a.size == word for a in attributes]) for i, word in enumerate(toyworld.SPECIAL_CARE)]
    with torch.no_grad():
        checker.concept_embeds.zero_()
        checker.concept_embeds_weights.fill_(1.0)
        checker.special_care_embeds.zero_()
        checker.special_care_embeds_weights.fill_(1.0)
        for kind, i, name, prompt, has in rows:
            emb = text_embeddings(clip, tokenizer, [prompt])[0]
            cos = (image_emb @ emb).numpy()
            has = np.array(has)
            threshold = threshold_between(cos[~has], cos[has])
            low, high = np.percentile(cos[~has], 99), np.percentile(cos[has], 1)
            getattr(checker, f"{kind}_embeds")[i] = emb
            getattr(checker, f"{kind}_embeds_weights")[i] = threshold
            report[name] = {"kind": kind, "index": i, "prompt": prompt,
                            "threshold": round(threshold, 4),
                            "recall": float((cos[has] > threshold).mean()),
                            "false_positive_rate": float((cos[~has] > threshold).mean())}
            log(f"checker {kind} {name!r}: threshold {threshold:.3f}, "
                f"separation {high - low:+.3f}, recall {report[name]['recall']:.3f}, "
                f"fpr {report[name]['false_positive_rate']:.3f}")
    return checker, report


# ---------------------------------------------------------------- assembly and main

def text_encoder_of(clip: CLIPModel) -> CLIPTextModel:
    """The CLIP text tower as the standalone `CLIPTextModel` that Stable Diffusion pipelines use."""
    text_encoder = CLIPTextModel(clip.config.text_config)
    text_encoder.load_state_dict(clip.text_model.state_dict())
    return text_encoder.eval()


def save_pipeline(out: Path, tokenizer, clip, vae, unet, checker) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder_of(clip), tokenizer=tokenizer,
                                   unet=unet, scheduler=noise_schedule(DDIMScheduler),
                                   safety_checker=checker, feature_extractor=image_processor(),
                                   image_encoder=None, requires_safety_checker=True)
    pipe.save_pretrained(out / "toy-sd", safe_serialization=True)
    clip.save_pretrained(out / "toy-clip", safe_serialization=True)
    CLIPProcessor(image_processor=image_processor(), tokenizer=tokenizer).save_pretrained(out / "toy-clip")
    return pipe


def _stage(work: Path, name: str, settings: dict, train_fn, load_fn):
    """Train a stage, or reuse its saved result when the same settings produced it before."""
    folder = work / name
    record = folder / "stage.json"
    if record.exists() and json.loads(record.read_text())["settings"] == settings:
        log(f"{name}: reusing {folder} (same settings)")
        return load_fn(folder), json.loads(record.read_text())["minutes"]
    started = time.time()
    model = train_fn()
    minutes = round((time.time() - started) / 60, 1)
    model.save_pretrained(folder, safe_serialization=True)
    record.write_text(json.dumps({"settings": settings, "minutes": minutes}))
    return model, minutes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="where the model folders go")
    parser.add_argument("--work", type=Path, default=Path("build/toy-training"),
                        help="each stage's result, reused when its steps and data are unchanged "
                             "(delete it after changing the training code)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few steps of each stage")
    parser.add_argument("--images", type=int, default=30000, help="training images")
    parser.add_argument("--clip-steps", type=int, default=2500)
    parser.add_argument("--vae-steps", type=int, default=1000)
    parser.add_argument("--unet-steps", type=int, default=3000)
    parser.add_argument("--refine-steps", type=int, default=600,
                        help="UNet steps at learning rate REFINE_LR, from the first run's EMA")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.clip_steps, args.vae_steps, args.unet_steps, args.refine_steps = 512, 3, 3, 3, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    log(f"rendering {args.images} training and {args.images // 10} held-out images")
    train = toyworld.make_dataset(args.images, seed=args.seed, split="train")
    test = toyworld.make_dataset(max(args.images // 10, 256), seed=args.seed + 1, split="test")
    data = {"seed": args.seed, "images": args.images, "toy_world": toyworld.VERSION}

    tokenizer = build_tokenizer()
    minutes = {}
    clip_settings = {**data, "steps": args.clip_steps, "grey": GREY_SHARE,
                     "matches": "every caption true of the image"}
    clip, minutes["clip"] = _stage(args.work, "clip", clip_settings,
                  lambda: train_clip(tokenizer, train, args.clip_steps, seed=args.seed),
                  CLIPModel.from_pretrained)
    zero_shot = zero_shot_accuracy(clip, tokenizer, test[0], test[1])
    log(f"clip zero-shot on held-out images: {zero_shot}")

    vae_settings = {**data, "steps": args.vae_steps}
    vae, minutes["vae"] = _stage(args.work, "vae", vae_settings,
                 lambda: train_vae(train, args.vae_steps, seed=args.seed),
                 AutoencoderKL.from_pretrained)
    with torch.no_grad():
        x = pixels_for_vae(test[0][:512])
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample
    vae_mae = float((recon.clamp(-1, 1) - x).abs().mean() * 127.5)
    log(f"vae reconstruction error on held-out images: {vae_mae:.2f} / 255 per pixel")

    text_encoder = text_encoder_of(clip)
    unet_settings = {**data, "steps": args.unet_steps, "unknown_words": UNKNOWN_WORDS,
                     "clip": clip_settings, "vae": vae_settings}
    unet, minutes["unet"] = _stage(args.work, "unet", unet_settings,
                  lambda: train_unet(text_encoder, tokenizer, vae, train, args.unet_steps,
                                     seed=args.seed),
                  UNet2DConditionModel.from_pretrained)
    refine_settings = {"steps": args.refine_steps, "lr": REFINE_LR, "seed": args.seed + 1, "unet": unet_settings}
    unet, minutes["unet_refine"] = _stage(args.work, "unet-refine", refine_settings,
                  lambda: train_unet(text_encoder, tokenizer, vae, train, args.refine_steps,
                                     lr=REFINE_LR, seed=args.seed + 1, init=unet),
                  UNet2DConditionModel.from_pretrained)
    checker, checker_report = build_safety_checker(clip, tokenizer, test)
    save_pipeline(args.out, tokenizer, clip, vae, unet, checker)

    record = {"command": " ".join(["python -m utils.toy.train"] + (argv if argv is not None else sys.argv[1:])),
              "seed": args.seed, "images": args.images, "clip_steps": args.clip_steps,
              "vae_steps": args.vae_steps, "unet_steps": args.unet_steps,
              "unet_refine": {"steps": args.refine_steps, "lr": REFINE_LR, "seed": args.seed + 1},
              "unet_captions": {"empty": P_EMPTY, "unknown_words_only": P_UNKNOWN_ONLY,
                                "unknown_words_inserted": toyworld.P_UNKNOWN},
              "threads": torch.get_num_threads(), "training_minutes": minutes,
              "torch": torch.__version__, "clip_zero_shot": zero_shot,
              "vae_mean_abs_error_255": round(vae_mae, 2), "safety_checker": checker_report}
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    log(f"saved to {args.out}; training took {sum(minutes.values()):.1f} minutes {minutes}")


if __name__ == "__main__":
    main()
