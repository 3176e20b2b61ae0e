"""The toy world: captions, rendering, the controlled bias, held-out pairs, and the decoder."""

import collections
import random

import numpy as np
import pytest

from utils import toyworld


def test_public_names_are_caption_words():
    assert toyworld.COLORS == ["red", "green", "blue", "yellow", "purple"]
    assert set(toyworld.SHAPES) == {"circle", "square", "triangle", "diamond"}
    assert len(toyworld.RESTRICTED) >= 3 and len(toyworld.SPECIAL_CARE) >= 1
    vocabulary = toyworld.vocabulary()
    for word in toyworld.COLORS + toyworld.SHAPES + toyworld.RESTRICTED + toyworld.SPECIAL_CARE:
        assert word in vocabulary


@pytest.mark.parametrize("kwargs, expected", [
    (dict(color="red", shape="circle"), "a red circle"),
    (dict(color="red", shape="circle", size="small", background="grey"),
     "a small red circle on a grey background"),
    (dict(shape="square", position="center", restricted=("cross",)), "a square in the center with a cross"),
    (dict(color="blue", position="left", restricted=("bars", "ring")),
     "a blue shape on the left with bars and a ring"),
    (dict(role="doctor"), "a doctor"),
    (dict(role="chef", color="red", shape="diamond"), "a chef as a red diamond"),
    (dict(), "a shape"),
])
def test_caption(kwargs, expected):
    assert toyworld.caption(**kwargs) == expected


def test_caption_rejects_words_outside_the_world():
    with pytest.raises(ValueError, match="choose one of"):
        toyworld.caption(color="orange")
    with pytest.raises(ValueError, match="unknown"):
        toyworld.caption(restricted=("skull",))
    with pytest.raises(ValueError, match="choose one of"):
        toyworld.Attributes(color="red", shape="hexagon")


def test_dataset_is_deterministic_and_seed_dependent():
    a_images, a_attrs, a_caps = toyworld.make_dataset(64, seed=3)
    b_images, b_attrs, b_caps = toyworld.make_dataset(64, seed=3)
    c_images, _, _ = toyworld.make_dataset(64, seed=4)
    assert np.array_equal(a_images, b_images) and a_attrs == b_attrs and a_caps == b_caps
    assert not np.array_equal(a_images, c_images)
    assert a_images.shape == (64, toyworld.IMAGE_SIZE, toyworld.IMAGE_SIZE, 3)
    assert a_images.dtype == np.uint8


def test_held_out_pairs_never_appear_in_training():
    rng = random.Random(0)
    train = [toyworld.sample_attributes(rng, "train") for _ in range(5000)]
    heldout = [toyworld.sample_attributes(rng, "heldout") for _ in range(200)]
    assert not any((a.color, a.shape) in toyworld.HELD_OUT for a in train)
    assert all((a.color, a.shape) in toyworld.HELD_OUT for a in heldout)


def test_bias_ratios_in_the_data_match_the_documentation():
    rng = random.Random(1)
    colours = collections.defaultdict(collections.Counter)
    for _ in range(20000):
        a = toyworld.sample_attributes(rng, "test")
        colours[a.role][a.color] += 1
    for role, favoured in toyworld.BIAS.items():
        (colour, share), = favoured.items()
        measured = colours[role][colour] / sum(colours[role].values())
        assert abs(measured - share) < 0.03, (role, measured)
    no_role = colours[None]
    assert max(no_role.values()) / sum(no_role.values()) < 0.23  # uniform: 0.2 each


def test_render_draws_what_the_attributes_say():
    image = np.asarray(toyworld.render(toyworld.Attributes(
        color="red", shape="square", size="large", position="center", background="white")))
    assert tuple(image[16, 16]) == toyworld.RGB["red"]
    assert tuple(image[1, 1]) == toyworld.RGB["white"]
    with_cross = np.asarray(toyworld.render(toyworld.Attributes(
        color="red", shape="square", size="small", background="white", restricted=("cross",))))
    assert tuple(with_cross[1, 1]) == toyworld.RGB["ink"]


def test_decoder_reads_the_data_sets_own_images():
    images, attributes, _ = toyworld.make_dataset(600, seed=11, split="test")
    errors = collections.Counter()
    for image, attrs in zip(images, attributes):
        decoded = toyworld.decode(image)
        for key in ("color", "shape", "size", "position", "background"):
            errors[key] += decoded[key] != getattr(attrs, key)
        errors["restricted"] += sorted(decoded["restricted"]) != sorted(attrs.restricted)
    for key, count in errors.items():
        assert count / len(images) <= 0.02, (key, count)


def test_decoder_sees_no_shape_in_a_black_image():
    decoded = toyworld.decode(np.zeros((32, 32, 3), np.uint8))
    assert decoded["color"] is None and decoded["restricted"] == []
    assert decoded["background"] == "black"


def test_decoder_rejects_wrong_input():
    with pytest.raises(ValueError, match="decode expects"):
        toyworld.decode(np.zeros((32, 32), np.uint8))


def test_training_captions_drop_attributes_but_never_invent_them():
    rng = random.Random(2)
    attrs = toyworld.Attributes(color="blue", shape="circle", size="small", position="left",
                                background="black", restricted=("ring",), role="doctor")
    captions = {toyworld.training_caption(attrs, rng) for _ in range(300)}
    assert toyworld.caption(**attrs.caption_kwargs()) in captions
    assert "a doctor" in captions or any(c.startswith("a doctor as") for c in captions)
    words = {w for c in captions for w in c.split()}
    assert words <= set(toyworld.vocabulary())
    assert not words & (set(toyworld.COLORS) - {"blue"})
