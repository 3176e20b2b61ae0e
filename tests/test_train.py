"""The training code that reproduces the toy models (CI never retrains: a few steps only)."""

import json
import random

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPModel

from utils import toyworld
from utils.toy import train


def test_tokenizer_keeps_every_toy_word_whole():
    tokenizer = train.build_tokenizer()
    longest = toyworld.caption(role="doctor", size="small", color="purple", shape="triangle",
                               position="right", background="black", restricted=("cross", "bars"))
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(longest).input_ids)
    assert tokens[1:-1] == [w + "</w>" for w in longest.split()]
    assert len(tokens) <= train.MAX_TOKENS
    # words outside the world still tokenize, into pieces, never into an unknown token
    pieces = tokenizer("zebra").input_ids
    assert len(pieces) > 3 and tokenizer.unk_token_id not in pieces[1:-1]


def test_clip_input_matches_the_image_processor():
    images, _, _ = toyworld.make_dataset(4, seed=0)
    processed = train.image_processor()(images=list(images), return_tensors="pt").pixel_values
    assert torch.allclose(train.pixels_for_clip(images), processed, atol=1e-5)


def test_a_caption_matches_every_image_it_is_true_of():
    images = [toyworld.Attributes(color="red", shape="circle", restricted=("cross",), role="doctor"),
              toyworld.Attributes(color="blue", shape="circle", size="small"),
              toyworld.Attributes(color="red", shape="square", background="black")]
    captions = ["a circle", "a red circle", "a doctor", "a shape with a cross", "a small shape",
                "a shape", "a red shape on a black background", "a purple diamond"]
    image_codes = torch.tensor([train._codes(train._words_of(a), absent=-2) for a in images])
    caption_codes = torch.tensor([train._codes(set(c.split()), absent=-1) for c in captions])
    assert train.described(caption_codes, image_codes).tolist() == [
        [True, True, False],    # a circle
        [True, False, False],   # a red circle
        [True, False, False],   # a doctor: only the image whose caption had the role
        [True, False, False],   # a shape with a cross
        [False, True, False],   # a small shape
        [True, True, True],     # a shape
        [False, False, True],   # a red shape on a black background
        [False, False, False],  # a purple diamond
    ]


def test_greyscale_keeps_grey_and_removes_colour():
    images = np.stack([np.asarray(toyworld.render(toyworld.Attributes(color=c, shape="circle")))
                       for c in toyworld.COLORS])
    grey = train._greyscale(train.pixels_for_clip(images))
    rgb = grey * torch.tensor(train.CLIP_STD).view(1, 3, 1, 1) + torch.tensor(train.CLIP_MEAN).view(1, 3, 1, 1)
    assert torch.allclose(rgb[:, 0], rgb[:, 1], atol=1e-5) and torch.allclose(rgb[:, 1], rgb[:, 2], atol=1e-5)
    corner = rgb[:, 0, 0, 0]  # the grey background stays grey (128)
    assert torch.allclose(corner, torch.full_like(corner, 128 / 255), atol=1e-5)
    centre = rgb[:, 0, 16, 16]  # the shapes' colours differ only in brightness now
    assert len(set(centre.mul(255).round().tolist())) == len(toyworld.COLORS)


def test_latent_normalisation_keeps_decoding_and_standardises_latents():
    torch.manual_seed(0)
    vae = train.build_vae().eval()
    images = train.pixels_for_vae(toyworld.make_dataset(64, seed=0)[0])
    with torch.no_grad():
        before = vae.decode(vae.encode(images).latent_dist.mode()).sample
        train.normalise_latents(vae, images)
        latents = vae.encode(images).latent_dist.mode()
        after = vae.decode(latents).sample
    assert torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(latents.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(latents.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-3)


def test_quick_training_builds_a_loadable_pipeline(tmp_path):
    train.main(["--quick", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")])
    record = json.loads((tmp_path / "out" / "training.json").read_text())
    assert record["unet_steps"] == 3 and record["seed"] == 0
    # the UNet's second, lower-learning-rate run is a stage of its own, timed and recorded
    assert record["unet_refine"] == {"steps": 3, "lr": train.REFINE_LR, "seed": 1}
    assert set(record["training_minutes"]) == {"clip", "vae", "unet", "unet_refine"}
    # the caption mix that notebook 01 describes, and the UNet stage's cache key, unchanged by naming it
    assert record["unet_captions"] == {"empty": 0.05, "unknown_words_only": 0.1, "unknown_words_inserted": 0.15}
    assert train.UNKNOWN_WORDS == "unknown_word pool; p_empty 0.05, p_unknown_only 0.1"
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "out" / "toy-sd", use_safetensors=True)
    assert pipe.safety_checker is not None
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    image = pipe("a red circle", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (toyworld.IMAGE_SIZE, toyworld.IMAGE_SIZE, 3)
    # a second run with the same settings reuses every stage instead of training again
    train.main(["--quick", "--out", str(tmp_path / "out2"), "--work", str(tmp_path / "work")])
    first = (tmp_path / "out" / "toy-sd" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    second = (tmp_path / "out2" / "toy-sd" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert first == second


def test_unet_refinement_starts_from_the_given_weights():
    """The refinement run continues the first run's UNet (one small step away from it) and
    leaves that UNet as it was."""
    tokenizer = train.build_tokenizer()
    torch.manual_seed(0)
    text_encoder = train.text_encoder_of(CLIPModel(train.clip_config(tokenizer)))
    vae = train.build_vae().eval()
    first = train.build_unet(text_encoder.config.hidden_size).eval().requires_grad_(False)  # as the first run returns it
    before = {k: v.clone() for k, v in first.state_dict().items()}
    data = toyworld.make_dataset(16, seed=0)
    refined = train.train_unet(text_encoder, tokenizer, vae, data, 1, batch_size=4, lr=train.REFINE_LR,
                               seed=1, init=first)
    assert all(torch.equal(before[k], v) for k, v in first.state_dict().items())
    gaps = [(refined.state_dict()[k] - v).abs().max().item() for k, v in before.items()]
    assert 0 < max(gaps) < 1e-2  # a new UNet's weights differ from these by far more
    fresh = train.build_unet(text_encoder.config.hidden_size).state_dict()
    assert max((fresh[k] - v).abs().max().item() for k, v in before.items()) > 0.1


def test_checker_threshold_sits_between_the_percentiles():
    without = np.linspace(0.0, 0.5, 1001)  # 99th percentile 0.495
    with_concept = np.linspace(0.6, 1.0, 1001)  # 1st percentile 0.604
    assert train.threshold_between(without, with_concept) == pytest.approx((0.495 + 0.604) / 2)
    assert train.threshold_between(without, with_concept) != pytest.approx(
        (np.median(without) + np.median(with_concept)) / 2)


RED_CIRCLE_WITH_RING = toyworld.Attributes(color="red", shape="circle", size="small", position="left",
                                           background="grey", restricted=("ring",), role=None)


def test_unet_captions_mix_empty_unknown_only_and_training_captions():
    tokenizer = train.build_tokenizer()
    rng = random.Random(0)
    def caption(r):
        return train.caption_for_unet(tokenizer, RED_CIRCLE_WITH_RING, r, rng, train.P_EMPTY, train.P_UNKNOWN_ONLY)
    assert caption(0.01) == ""
    known = set(toyworld.vocabulary())
    attribute_words = known - set(toyworld.FUNCTION_WORDS)
    unknown_only = [caption(0.1) for _ in range(300)]
    assert all(c and not set(c.split()) & attribute_words for c in unknown_only)
    assert any(set(c.split()) & set(toyworld.FUNCTION_WORDS) for c in unknown_only)
    captions = [caption(0.5) for _ in range(500)]
    assert sum("red" in c.split() for c in captions) > 300
    extra = {w for c in captions for w in c.split()} - known
    assert len(extra - set(toyworld.FILLER_WORDS)) > 20, "unknown words come from the large pool"


def test_unet_captions_longer_than_the_token_limit_are_drawn_again():
    tokenizer = train.build_tokenizer()
    tokenizer.model_max_length = 14
    rng = random.Random(1)
    lengths = [len(tokenizer(train.caption_for_unet(tokenizer, RED_CIRCLE_WITH_RING, r, rng, 0.05, 0.1)).input_ids)
               for r in np.linspace(0.06, 0.99, 200)]
    assert max(lengths) <= 14
    unlimited = train.build_tokenizer()
    assert max(len(unlimited(toyworld.training_caption(RED_CIRCLE_WITH_RING, rng, toyworld.unknown_word)).input_ids)
               for _ in range(200)) > 14, "the limit above must cut some captions, or this test shows nothing"
