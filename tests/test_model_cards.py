"""The shipped model cards state the numbers that ship with the weights."""

import importlib.util
from pathlib import Path

import pytest

from utils import models

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("model_cards", ROOT / "scripts" / "model_cards.py")
model_cards = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model_cards)


@pytest.mark.parametrize("name", ["toy-sd", "toy-clip"])
def test_each_card_is_its_template_filled_from_the_shipped_numbers(name):
    shipped = (models.WEIGHTS_DIR / name / "README.md").read_text()
    assert shipped == model_cards.render(name, model_cards.fields()), (
        f"{name}/README.md is stale: run `python scripts/model_cards.py`")


def test_a_template_field_without_a_value_is_an_error():
    with pytest.raises(ValueError, match="no value"):
        model_cards.render("toy-clip", {})
