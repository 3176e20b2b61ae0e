"""The rule that derives the toy model's SLD presets from the published ones."""

import json
import math

import pytest

from utils import models, sld
from utils.toy import bars, calibrate_sld, evaluate


def test_rule_scales_thresholds_up_and_scales_down_by_the_same_k():
    k, presets = calibrate_sld.calibrate(spread=0.5)
    assert k == pytest.approx(50)
    for name, published in sld.PRESETS.items():
        ours = presets[name]
        assert ours["sld_threshold"] == pytest.approx(published["sld_threshold"] * 50, abs=1e-4)
        assert ours["sld_guidance_scale"] == pytest.approx(published["sld_guidance_scale"] / 50, abs=1e-4)
        assert ours["sld_momentum_scale"] == published["sld_momentum_scale"]
        assert ours["sld_mom_beta"] == published["sld_mom_beta"]
        assert ours["sld_warmup_steps"] == round(published["sld_warmup_steps"] * 20 / 50)
    assert presets["MEDIUM"]["sld_threshold"] == pytest.approx(0.5), "MEDIUM's threshold is the spread itself"


def test_multiplier_scales_k():
    k, presets = calibrate_sld.calibrate(spread=0.5, multiplier=3)
    assert k == pytest.approx(150)
    assert presets["MEDIUM"]["sld_threshold"] == pytest.approx(1.5)
    assert presets["STRONG"]["sld_guidance_scale"] == pytest.approx(2000 / 150, abs=1e-4)


def _row(multiplier, reduction, fidelity_drop, reduction_se=0.03):
    return {"multiplier": multiplier, "reduction": reduction, "fidelity_drop": fidelity_drop,
            "reduction_se": reduction_se}


def test_the_fit_aims_past_the_bar():
    """A fit that stops at the first m to clear its aim tends to fall short on new prompts, so a
    fall that only just clears MEDIUM's bar is not enough on the calibration prompts."""
    assert calibrate_sld.AIM_REDUCTION > bars.BARS["sld.reduction.MEDIUM"][1]
    assert calibrate_sld.AIM_FIDELITY_DROP == bars.BARS["sld.fidelity_drop.MEDIUM"][1]
    assert not calibrate_sld.meets_aim(_row(1, 0.45, 0.05))
    assert calibrate_sld.meets_aim(_row(1, 0.50, 0.10))
    assert not calibrate_sld.meets_aim(_row(1, 0.60, 0.105))


def test_choose_multiplier_takes_the_first_that_meets_the_aim():
    tried = [_row(1, 0.20, 0.02), _row(1.5, 0.45, 0.05), _row(2, 0.52, 0.08), _row(3, 0.60, 0.09)]
    assert calibrate_sld.choose_multiplier(tried) == (2, True)
    # a bigger reduction that costs too much fidelity does not meet the aim
    assert calibrate_sld.choose_multiplier([_row(1, 0.20, 0.02), _row(2, 0.50, 0.11)]) == (1, False)
    assert calibrate_sld.choose_multiplier([_row(1, 0.20, 0.12), _row(2, 0.50, 0.15)]) == (1, False)
    assert calibrate_sld.choose_multiplier([_row(1, 0.10, 0.0), _row(2, 0.30, 0.10)]) == (2, False)


def test_without_the_aim_the_weakest_m_within_one_standard_error_of_the_best_is_taken():
    """The fall peaks and then shrinks as m grows (the refined toy UNet's fit): neither the largest
    m nor a weaker one that the data can tell from the best is taken."""
    tried = [_row(4, 0.453, 0.056, 0.034), _row(6, 0.491, 0.066, 0.033), _row(8, 0.496, 0.078, 0.033),
             _row(12, 0.483, 0.066, 0.033), _row(16, 0.444, 0.069, 0.034)]
    assert calibrate_sld.choose_multiplier(tried) == (6, False)
    # a narrower standard error leaves only the best itself
    narrow = [{**row, "reduction_se": 0.003} for row in tried]
    assert calibrate_sld.choose_multiplier(narrow) == (8, False)
    # the best that keeps fidelity, not the best of all
    costly = [*tried[:2], _row(8, 0.60, 0.11, 0.033)]
    assert calibrate_sld.choose_multiplier(costly) == (6, False)
    assert calibrate_sld.best_keeping(costly)["multiplier"] == 6


def test_the_record_says_why_m_was_chosen():
    def said(tried):
        multiplier, met = calibrate_sld.choose_multiplier(tried)
        return calibrate_sld.fit_outcome({"tried": tried, "multiplier": multiplier, "met": met})
    assert said([_row(1, 0.20, 0.02), _row(2, 0.55, 0.08)]) == "the first m that does is 2"
    assert said([_row(1, 0.20, 0.02), _row(2, 0.50, 0.11)]) == (
        "no m tried does (aim not met); the largest fall that keeps fidelity is 20.0% (m = 1, standard error "
        "3.0 points), and m = 1 is the weakest within one standard error of it")
    # a model on which even the weakest m costs too much fidelity (toy world v3 with the old grid)
    assert said([_row(1, 0.61, 0.25), _row(2, 0.66, 0.35)]) == (
        "no m tried does (aim not met); m = 1, the first tried, as none keeps fidelity")


def test_calibration_prompts_are_held_out_from_the_benchmark():
    prompts = calibrate_sld.calibration_prompts()
    assert len(prompts) >= 50
    assert not set(prompts) & set(calibrate_sld.toyworld.TOY_I2P)
    assert {c for _, c in prompts} == set(calibrate_sld.toyworld.TOY_I2P_CATEGORIES)


def test_shipped_presets_follow_the_rule_from_their_recorded_fit():
    """The shipped presets are the rule's for the recorded spread and the multiplier that the
    recorded calibration runs choose; the runs tried the multipliers in order, up to the first
    that met the aim."""
    record = json.loads((models.TOY_SD_DIR / "sld_presets.json").read_text())
    fit = record["fit"]
    assert calibrate_sld.choose_multiplier(fit["tried"]) == (fit["multiplier"], fit["met"])
    shipped = json.loads((models.WEIGHTS_DIR / "evaluation.json").read_text())["sld"]
    assert fit["benign_images_per_prompt"] == shipped["benign_images_per_prompt"] == evaluate.BENIGN_IMAGES
    tried = [row["multiplier"] for row in fit["tried"]]
    assert tried == list(calibrate_sld.MULTIPLIERS[:len(tried)])
    assert [calibrate_sld.meets_aim(row) for row in fit["tried"][:-1]] == [False] * (len(tried) - 1)
    for row in fit["tried"]:
        assert row["reduction"] == pytest.approx(1 - row["glyph"] / fit["plain"]["glyph"])
        assert row["fidelity_drop"] == pytest.approx(fit["plain"]["fidelity"] - row["fidelity"])
        assert row["images"] == fit["prompts"] * fit["images_per_prompt"]
        assert row["reduction_se"] == pytest.approx(
            math.sqrt(row["glyph"] * (1 - row["glyph"]) / row["images"]) / fit["plain"]["glyph"])
    k, presets = calibrate_sld.calibrate(record["spread"]["median_prompt_vs_safety"], fit["multiplier"])
    assert record["presets"] == presets
    assert record["k"] == pytest.approx(k, abs=1e-3)
    assert sld.calibrated_presets("toy") == presets
    assert record["safety_concept"] == sld.safety_concept_for("toy")
    assert record["rule"] == calibrate_sld.rule_text(record["spread"]["median_prompt_vs_safety"],
                                                     record["safety_concept"], fit), "rerun the calibration"


def test_live_spread_matches_the_recorded_one():
    """Measured again on 12 prompts of the toy I2P: the same order of magnitude as recorded on all."""
    record = json.loads((models.TOY_SD_DIR / "sld_presets.json").read_text())
    pipe = models.load_pipeline("toy")
    prompts = [p for p, _ in calibrate_sld.toyworld.TOY_I2P[:12]]
    live = calibrate_sld.prediction_spread(pipe, prompts, record["safety_concept"])
    assert live["median_prompt_vs_safety"] == pytest.approx(record["spread"]["median_prompt_vs_safety"], rel=0.35)
