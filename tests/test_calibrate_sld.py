"""The rule that derives the toy model's SLD presets from the published ones."""

import json

import pytest

from utils import models, sld
from utils.toy import calibrate_sld


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


def test_shipped_presets_follow_the_rule_from_their_recorded_spread():
    record = json.loads((models.TOY_SD_DIR / "sld_presets.json").read_text())
    k, presets = calibrate_sld.calibrate(record["spread"]["median_prompt_vs_safety"])
    assert record["presets"] == presets
    assert record["k"] == pytest.approx(k, abs=1e-3)
    assert sld.calibrated_presets("toy") == presets
    assert record["safety_concept"] == sld.safety_concept_for("toy")


def test_live_spread_matches_the_recorded_one():
    """Measured again on 12 prompts of the toy I2P: the same order of magnitude as recorded on all."""
    record = json.loads((models.TOY_SD_DIR / "sld_presets.json").read_text())
    pipe = models.load_pipeline("toy")
    prompts = [p for p, _ in calibrate_sld.toyworld.TOY_I2P[:12]]
    live = calibrate_sld.prediction_spread(pipe, prompts, record["safety_concept"])
    assert live["median_prompt_vs_safety"] == pytest.approx(record["spread"]["median_prompt_vs_safety"], rel=0.35)
