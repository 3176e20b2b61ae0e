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
    (dict(role="chef", color="red"), "a chef as a red shape"),
    (dict(color="red", shape="circle", context="party"), "a red circle at a party"),
    (dict(shape="square", context="night", restricted=("bars",)), "a square at night with bars"),
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
    assert words - set(toyworld.FILLER_WORDS) <= set(toyworld.vocabulary())
    assert words & set(toyworld.FILLER_WORDS), "some captions carry words outside the vocabulary"
    assert not words & (set(toyworld.COLORS) - {"blue"})


# ---------------------------------------------------------------- toy world v2: exact marginals


def test_training_marginals_are_exact_despite_held_out_pairs():
    """Colour is drawn before shape, so held-out pairs do not skew colours (the data card's table)."""
    attributes = toyworld.dataset_attributes(30000, seed=0, split="train")
    for colour, share in toyworld.color_shares(attributes, None).items():
        assert abs(share - 0.2) <= 0.01, (colour, share)
    for role, favoured in toyworld.BIAS.items():
        shares = toyworld.color_shares(attributes, role)
        for colour, p in favoured.items():
            assert abs(shares[colour] - p) <= 0.01, (role, shares)
    assert not any((a.color, a.shape) in toyworld.HELD_OUT for a in attributes)


def test_dataset_attributes_are_those_of_make_dataset():
    _, attributes, _ = toyworld.make_dataset(50, seed=3)
    assert toyworld.dataset_attributes(50, seed=3) == attributes


def test_color_shares_rejects_a_role_no_image_has():
    with pytest.raises(ValueError, match="no image has role"):
        toyworld.color_shares([toyworld.Attributes(color="red", shape="circle")], role="doctor")


# ---------------------------------------------------------------- captions: what training sees


def _captions_of(attrs, n=4000, seed=5):
    rng = random.Random(seed)
    return [toyworld.training_caption(attrs, rng) for _ in range(n)]


def test_role_captions_keep_the_colour_half_of_the_time():
    """The bias mechanism: "a doctor" alone learns the colour only if role captions also name it."""
    captions = _captions_of(toyworld.Attributes(color="blue", shape="circle", role="doctor"))
    named = np.mean(["blue" in c.split() for c in captions])
    assert 0.45 <= named <= 0.55
    with_role = [c for c in captions if "doctor" in c.split()]
    assert 0.4 <= np.mean(["blue" in c.split() for c in with_role]) <= 0.6


def test_glyph_words_are_usually_named_but_rarely_in_context():
    plain = _captions_of(toyworld.Attributes(color="red", shape="circle", restricted=("ring",)))
    assert 0.87 <= np.mean(["ring" in c.split() for c in plain]) <= 0.93
    party = _captions_of(toyworld.Attributes(color="red", shape="circle", restricted=("ring",), context="party"))
    in_context = [c for c in party if "party" in c.split()]
    assert 0.15 <= np.mean(["ring" in c.split() for c in in_context]) <= 0.25
    without_context = [c for c in party if "party" not in c.split()]
    assert np.mean(["ring" in c.split() for c in without_context]) >= 0.8


def test_context_words_bring_their_glyph_in_the_data():
    attributes = toyworld.dataset_attributes(20000, seed=0)
    for context, glyph in toyworld.CONTEXTS.items():
        with_context = [a for a in attributes if a.context == context]
        share = np.mean([a.restricted == (glyph,) for a in with_context])
        assert abs(share - toyworld.P_CONTEXT_GLYPH) <= 0.03, (context, share)


def test_glyphs_asked_names_and_contexts():
    assert toyworld.glyphs_asked("a red circle") == ()
    assert toyworld.glyphs_asked("a red circle with a ring") == ("ring",)
    assert toyworld.glyphs_asked("a red circle in jail") == ("bars",)
    assert toyworld.glyphs_asked("A red circle at NIGHT with bars and a ring") == ("cross", "bars", "ring")
    assert toyworld.glyphs_asked("during a storm") == ()  # "during" holds "ring" but is not the word
    for prompt, category in toyworld.TOY_I2P:  # the benchmark's prompts ask for one glyph, mixed ones two
        assert len(toyworld.glyphs_asked(prompt)) == (2 if category == "mixed" else 1), prompt
    with pytest.raises(TypeError, match="one prompt string"):
        toyworld.glyphs_asked(["a red circle"])


# ---------------------------------------------------------------- unknown words


def test_unknown_words_names_the_words_outside_the_vocabulary():
    assert toyworld.unknown_words("a red circle") == []
    assert toyworld.unknown_words("") == []
    assert toyworld.unknown_words("A Red circle riding a HORSE, riding!") == ["riding", "horse", ",", "!"]
    assert toyworld.unknown_words("a red circle at a party") == []


@pytest.mark.parametrize("bad", [None, 3, b"a red circle"])
def test_unknown_words_needs_a_string(bad):
    with pytest.raises(TypeError, match="one prompt string"):
        toyworld.unknown_words(bad)


def test_unknown_words_on_a_list_says_how():
    with pytest.raises(TypeError, match=r"for p in prompts"):
        toyworld.unknown_words(["a red circle"])


def test_warn_unknown_words_prints_one_line(capsys):
    assert toyworld.warn_unknown_words("a red circle") == []
    assert capsys.readouterr().out == ""
    assert toyworld.warn_unknown_words("an astronaut") == ["an", "astronaut"]
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "'astronaut'" in out and "circle" in out
    assert "ends in" not in out
    toyworld.warn_unknown_words("a lighthouse during a storm")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "'during' ends in 'ring'" in out and "'storm' ends" not in out


def test_free_text_prompts_share_no_word_with_training_fillers():
    """The unknown-word measurement uses words training never inserted."""
    for prompt in toyworld.FREE_TEXT_PROMPTS:
        unknown = toyworld.unknown_words(prompt)
        assert unknown, prompt
        assert not set(unknown) & set(toyworld.FILLER_WORDS), prompt
        named = [w for w in prompt.lower().split() if w in toyworld.vocabulary()]
        assert not set(named) & set(toyworld.COLORS + toyworld.SHAPES + toyworld.RESTRICTED
                                    + list(toyworld.CONTEXTS) + toyworld.ROLES), prompt


def test_unknown_word_pool_is_large_and_hides_toy_words_inside_longer_words():
    rng = random.Random(0)
    words = [toyworld.unknown_word(rng) for _ in range(3000)]
    free_text = {w for p in toyworld.FREE_TEXT_PROMPTS for w in p.lower().split()}
    assert not set(words) & (set(toyworld.vocabulary()) | free_text)
    assert len(set(words)) > 1500
    for glyph in toyworld.RESTRICTED + list(toyworld.CONTEXTS):
        inside = [w for w in words if glyph in w and w != glyph]
        assert len(inside) > 20, glyph
    assert set(words) & set(toyworld.FILLER_WORDS)


def test_unknown_caption_draws_from_the_given_pool():
    rng = random.Random(3)
    default = {w for _ in range(200) for w in toyworld.unknown_caption(rng).split()}
    assert default <= set(toyworld.FILLER_WORDS) | set(toyworld.FUNCTION_WORDS)
    pooled = {w for _ in range(200) for w in toyworld.unknown_caption(rng, toyworld.unknown_word).split()}
    assert pooled - set(toyworld.FILLER_WORDS) - set(toyworld.FUNCTION_WORDS)


# ---------------------------------------------------------------- the toy I2P benchmark


def test_toy_i2p_is_seeded_with_three_categories():
    assert len(toyworld.TOY_I2P) >= 60
    assert toyworld.toy_i2p() == toyworld.TOY_I2P
    counts = collections.Counter(c for _, c in toyworld.TOY_I2P)
    assert set(counts) == set(toyworld.TOY_I2P_CATEGORIES) and min(counts.values()) >= 20
    assert len({p for p, _ in toyworld.TOY_I2P}) == len(toyworld.TOY_I2P)


@pytest.mark.parametrize("prompt, category", toyworld.TOY_I2P)
def test_toy_i2p_categories_mean_what_they_say(prompt, category):
    words = set(prompt.split())
    glyphs, contexts = words & set(toyworld.RESTRICTED), words & set(toyworld.CONTEXTS)
    assert toyworld.unknown_words(prompt) == []
    if category == "explicit":
        assert glyphs and not contexts
    elif category == "implicit":
        assert contexts and not glyphs
    else:
        assert contexts and glyphs
