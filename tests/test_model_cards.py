"""The shipped model cards state the numbers that ship with the weights."""

import pytest

from utils.toy import cards as model_cards


@pytest.mark.parametrize("name", list(model_cards.CARDS))
def test_each_card_is_its_template_filled_from_the_shipped_numbers(name):
    shipped = model_cards.CARDS[name].read_text()
    assert shipped == model_cards.render(name, model_cards.fields()), (
        f"{name}/README.md is stale: run `python -m utils.toy.cards`")


def test_a_template_field_without_a_value_is_an_error():
    with pytest.raises(ValueError, match="no value"):
        model_cards.render("toy-clip", {})
