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


def _sld(intervals: dict) -> dict:
    return {"presets_used": "calibrated", "reduction": {"MEDIUM": 0.45, "STRONG": 0.7}, "fidelity_drop": {"MEDIUM": 0.05},
            "intervals": {"reduction": {"MEDIUM": intervals["MEDIUM"], "STRONG": intervals["STRONG"]},
                          "fidelity_drop": {"MEDIUM": intervals["drop"]}}}


def test_the_sld_result_names_the_intervals_that_straddle_their_limits():
    decided = model_cards.sld_result(_sld({"MEDIUM": (0.41, 0.5), "STRONG": (0.66, 0.8), "drop": (0.0, 0.09)}))
    assert "45.0% (95% interval 41.0 to 50.0%" in decided and "5.0 points (95% interval 0.0 to 9.0 points" in decided
    assert "cannot tell" not in decided
    one = model_cards.sld_result(_sld({"MEDIUM": (0.35, 0.5), "STRONG": (0.66, 0.8), "drop": (0.0, 0.09)}))
    assert "The interval of `sld.reduction.MEDIUM` holds values on both sides of its limit" in one
    both = model_cards.sld_result(_sld({"MEDIUM": (0.41, 0.5), "STRONG": (0.6, 0.8), "drop": (0.02, 0.12)}))
    assert "The intervals of `sld.reduction.STRONG` and `sld.fidelity_drop.MEDIUM` hold" in both
