"""CLIP embeddings and zero-shot classification: how a model sees images and text in one space.

Taught in `notebooks/01_toy_world.ipynb` (zero-shot attributes); the safety checker
(`notebooks/03_safety_checker.ipynb`) and the bias unit (`notebooks/05_bias_analysis.ipynb`)
build on it. Works with any `transformers.CLIPModel`: the toy CLIP or
`openai/clip-vit-large-patch14` (`utils.models.load_clip`).

Example:
    >>> model, processor = utils.models.load_clip("toy")
    >>> probs = zero_shot(model, processor, images, ["a red shape", "a blue shape"])  # (N, 2)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# CLIP's image normalisation (Radford et al. 2021), as `CLIPImageProcessor` applies it.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def pixels_for_clip(images: np.ndarray) -> torch.Tensor:
    """uint8 `(B, H, W, 3)` -> CLIP input `(B, 3, H, W)`, normalised as `CLIPImageProcessor`
    does for images that already have the model's input size (no resizing or cropping)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def text_embeddings(model, tokenizer, texts) -> torch.Tensor:
    """L2-normalised projected text embeddings `(N, projection_dim)` of a list of strings.

    Text is padded to the tokenizer's maximum length, as Stable Diffusion pads it.
    """
    if isinstance(texts, str):
        texts = [texts]
    ids = tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids.to(_device(model))
    pooled = model.text_model(input_ids=ids).pooler_output
    return F.normalize(model.text_projection(pooled), dim=-1).float().cpu()


@torch.no_grad()
def image_embeddings(model, images, processor=None, batch_size=256) -> torch.Tensor:
    """L2-normalised projected image embeddings `(N, projection_dim)`.

    Args:
        model (`CLIPModel`): the CLIP model.
        images (`np.ndarray` uint8 `(N, H, W, 3)` or `list[PIL.Image.Image]`): the images.
        processor (`CLIPProcessor` or `CLIPImageProcessor`, *optional*): resizes and normalises
            the images; without it, uint8 arrays of the model's input size are normalised directly.
        batch_size (`int`, defaults to 256): images per forward pass.
    """
    if len(images) == 0:
        raise ValueError("image_embeddings got no images")
    chunks = []
    for i in range(0, len(images), batch_size):
        batch = images[i:i + batch_size]
        if processor is not None:
            processor = getattr(processor, "image_processor", processor)
            pixels = processor(images=list(batch), return_tensors="pt").pixel_values
        else:
            pixels = pixels_for_clip(np.asarray(batch))
        pixels = pixels.to(_device(model), next(model.parameters()).dtype)
        pooled = model.vision_model(pixel_values=pixels).pooler_output
        chunks.append(model.visual_projection(pooled).float().cpu())
    return F.normalize(torch.cat(chunks), dim=-1)


def zero_shot(model, processor, images, labels, image_embeds=None) -> torch.Tensor:
    """Zero-shot classification: the probability of each text label for each image.

    CLIP's recipe: cosine similarity of L2-normalised embeddings, times the model's learned
    `logit_scale.exp()`, then a softmax over the labels. The result depends on the wording of
    the labels, and inherits CLIP's own biases.

    Args:
        model (`CLIPModel`), processor (`CLIPProcessor`): from `utils.models.load_clip`.
        images: as for `image_embeddings` (ignored when `image_embeds` is given).
        labels (`list[str]`): one prompt per class, e.g. ``["a red shape", "a blue shape"]``.
        image_embeds (`torch.Tensor`, *optional*): precomputed `image_embeddings`.

    Returns:
        `torch.Tensor` `(N, len(labels))`, rows summing to 1.

    Raises:
        `ValueError`: fewer than two labels.
    """
    if len(labels) < 2:
        raise ValueError(f"zero_shot needs at least two labels to choose between, got {labels!r}")
    if image_embeds is None:
        image_embeds = image_embeddings(model, images, processor)
    text = text_embeddings(model, processor.tokenizer, labels)
    logits = model.logit_scale.exp().float().cpu() * image_embeds @ text.T
    return logits.softmax(dim=-1)
