"""scripts/evaluate_at_scale.py: two processes give the report of one; a killed run restarts
without losing or duplicating rows; the seed in a row regenerates its image; the bias report;
clear errors on bad input. Tiny runs: 4 toy I2P prompts x 3 methods x 2 images, 4 steps."""

import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "evaluate_at_scale.py"
SMALL = ["i2p", "--profile", "toy", "--steps", "4", "--images-per-prompt", "2", "--limit", "4",
         "--methods", "plain,negative,MAX", "--no-progress"]
UNITS = 4 * 3  # prompts x methods
CRASH_AFTER = 3


def _load_script():
    spec = importlib.util.spec_from_file_location("evaluate_at_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


evaluate = _load_script()


def _env(tmp: Path, **extra) -> dict:
    """Offline, one thread per process, and Hugging Face/Accelerate files in a temporary folder
    (no default accelerate config from ~/.cache is read or written)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "COURSE_PROFILE": "toy", "HF_HOME": str(tmp / "hf"), "PYTHONPATH": str(ROOT)}
    env.pop(evaluate.CRASH_ENV, None)
    return {**env, **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(out.glob("rows-*.jsonl")) for line in path.read_text().splitlines()]


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, from start to end (in this process: plain `python`, no launcher)."""
    out = tmp_path_factory.mktemp("one") / "results"
    assert evaluate.main([*SMALL, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def restarted(tmp_path_factory):
    """One process, killed (os._exit, as by a signal) after 3 units, then run again to the end."""
    tmp = tmp_path_factory.mktemp("restart")
    out = tmp / "results"
    crashed = subprocess.run([sys.executable, str(SCRIPT), *SMALL, "--out", str(out)], cwd=ROOT, timeout=300,
                             env=_env(tmp, **{evaluate.CRASH_ENV: str(CRASH_AFTER)}), capture_output=True, text=True)
    after_crash = _rows(out)
    config = json.loads((out / "config.json").read_text())
    config.pop("info")
    partial = evaluate.make_report(config, after_crash)
    assert evaluate.main([*SMALL, "--out", str(out)]) == 0
    return crashed, after_crash, out, partial


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """`accelerate launch` with two CPU processes (torchrun underneath, gloo), from the start."""
    tmp = tmp_path_factory.mktemp("two")
    out = tmp / "results"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), str(SCRIPT), *SMALL, "--out", str(out)]
    result = subprocess.run(command, cwd=ROOT, env=_env(tmp), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, out


def test_two_processes_give_the_report_of_one(reference, two_processes):
    result, out = two_processes
    rows = _rows(out)
    assert sorted(r["process"] for r in rows) == [0] * (UNITS // 2) + [1] * (UNITS // 2)  # the work was split
    assert f"{UNITS} units ({UNITS * 2} images) in 2 process(es)" in result.stdout
    report = _report(out)
    assert report["complete"] and report["units_done"] == UNITS and report["images"] == UNITS * 2
    assert report == _report(reference)  # one process and two processes agree
    table = report["table"]
    assert set(table) == {"plain", "negative", "MAX"}
    assert set(table["plain"]) == {"explicit", "implicit", "mixed", "all"}
    for method in table.values():
        cell = method["all"]
        assert cell["probability"] == pytest.approx(cell["inappropriate"] / cell["images"], abs=1e-4)
        assert cell["wilson_95"][0] <= cell["probability"] <= cell["wilson_95"][1]
        assert cell["prompts_95"][0] <= cell["probability"] <= cell["prompts_95"][1]
        assert 0 <= cell["expected_max"] <= 1
    # the report does not depend on the order of the rows
    config = json.loads((out / "config.json").read_text())
    config.pop("info")
    shuffled = list(rows)
    random.Random(0).shuffle(shuffled)
    assert evaluate.make_report(config, sorted(shuffled, key=lambda r: (r["prompt_index"], r["method"]))) == report


def test_a_killed_run_restarts_without_losing_or_duplicating_rows(restarted, reference):
    crashed, after_crash, out, partial = restarted
    assert crashed.returncode == 17, crashed.stderr[-3000:]
    assert len(after_crash) == CRASH_AFTER
    assert partial["units_done"] == CRASH_AFTER and not partial["complete"]  # `report` works on what is done
    rows = _rows(out)
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == UNITS  # nothing lost, nothing twice
    assert all(row in rows for row in after_crash)  # the rows written before the kill are kept, not redone
    assert _report(out) == _report(reference)


def test_a_line_cut_short_is_ignored_and_its_unit_redone(reference, tmp_path, capsys):
    out = tmp_path / "cut"
    shutil.copytree(reference, out)
    last = sorted(out.glob("rows-*.jsonl"))[-1]
    text = last.read_text()
    cut = json.loads(text.splitlines()[-1])["key"]
    last.write_text(text[:len(text) - len(text.splitlines()[-1]) // 2 - 1])  # killed while writing the last row
    assert cut not in {r["key"] for r in evaluate.read_rows(out)[0]}
    assert evaluate.main([*SMALL, "--out", str(out)]) == 0
    assert "this run: 1 units" in capsys.readouterr().out
    keys = [r["key"] for r in evaluate.read_rows(out)[0]]
    assert len(keys) == UNITS and cut in keys
    assert _report(out) == _report(reference)


def test_a_rerun_skips_what_is_done(reference, capsys):
    out = reference
    before = _rows(out)
    assert evaluate.main([*SMALL, "--out", str(out)]) == 0
    assert "this run: 0 units" in capsys.readouterr().out
    assert _rows(out) == before


def test_the_recorded_seed_regenerates_the_image(reference, tmp_path, capsys):
    from PIL import Image

    from utils import toyworld

    out = reference
    config = json.loads((out / "config.json").read_text())
    rows = _rows(out)
    row = next(r for r in rows if r["method"] == "MAX" and any(r["glyphs"])) if any(
        any(r["glyphs"]) for r in rows if r["method"] == "MAX") else rows[0]
    assert row["seeds"] == [config["seed"] + row["prompt_index"] * 2 + j for j in range(2)]  # the documented rule
    for j in range(2):  # made again alone, from its recorded seed: the decoder sees the same
        image = evaluate.regenerate(out, row["prompt_index"], row["method"], j)
        assert toyworld.decode(image)["restricted"] == row["glyphs"][j]
    assert evaluate.main(["regenerate", "--out", str(out), "--prompt-index", str(row["prompt_index"]),
                          "--method", row["method"], "--image", "1", "--save", str(tmp_path / "x.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), image)
    err = _error(["regenerate", "--out", str(out), "--prompt-index", "99", "--save", str(tmp_path / "y.png")], capsys)
    assert "has no image 0 of prompt 99" in err


def test_bias_report(tmp_path, capsys):
    out = tmp_path / "bias"
    args = ["bias", "--profile", "toy", "--steps", "4", "--images-per-prompt", "6", "--limit", "2", "--no-progress",
            "--out", str(out)]
    assert evaluate.main(args) == 0
    printed = capsys.readouterr().out
    report = _report(out)
    assert report["complete"] and [e["prompt"] for e in report["prompts"]] == ["a doctor", "a doctor as a small shape"]
    assert "'a doctor' (doctor)" in printed
    for e in report["prompts"]:
        assert e["labelled"] + e["blocked"] == 6 and sum(e["counts"].values()) == e["labelled"]
        assert sum(e["shares"].values()) == pytest.approx(1, abs=1e-3)
        for color, share in e["shares"].items():
            assert e["bootstrap_95"][color][0] <= share <= e["bootstrap_95"][color][1]
            assert e["wilson_95"][color][0] <= share <= e["wilson_95"][color][1]
        assert e["mad_bootstrap_95"][0] <= e["mad"] <= e["mad_bootstrap_95"][1]
        assert e["amplification"]["color"] == "blue"  # toyworld.BIAS: doctors are blue
    assert evaluate.write_report(out) == report  # recomputed from the rows: the same


# ---------------------------------------------------------------- bad input


def _error(args, capsys) -> str:
    try:
        code = evaluate.main(args)
    except SystemExit as exit:  # argparse
        code = exit.code
    assert code == 2
    return capsys.readouterr().err


def test_unknown_measurement_and_profile(tmp_path, capsys):
    err = _error(["sweep", "--out", str(tmp_path)], capsys)
    assert "invalid choice: 'sweep'" in err and "i2p" in err and "bias" in err
    err = _error(["i2p", "--profile", "sdxl", "--out", str(tmp_path)], capsys)
    assert "invalid choice: 'sdxl'" in err and "toy" in err and "sd15" in err


def test_unreadable_prompt_files(tmp_path, capsys):
    base = ["i2p", "--out", str(tmp_path / "out"), "--steps", "4", "--methods", "plain"]
    err = _error(base + ["--prompts", str(tmp_path / "missing.csv")], capsys)
    assert "Cannot read the prompt file" in err and "'prompt' column" in err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("text,label\na red circle,x\n")
    err = _error(base + ["--prompts", str(wrong)], capsys)
    assert "lacks the column(s) ['prompt', 'categories']" in err and "['text', 'label']" in err
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    assert "Cannot read the prompt file" in _error(base + ["--prompts", str(binary)], capsys)
    assert not (tmp_path / "out").exists()  # nothing written on bad input


def test_unknown_method_and_too_few_steps(tmp_path, capsys):
    base = ["i2p", "--out", str(tmp_path / "out"), "--steps", "4"]
    err = _error(base + ["--methods", "plain,HUGE"], capsys)
    assert "Unknown method 'HUGE'" in err and "calibrated-MEDIUM" in err and "STRONG" in err
    err = _error(base + ["--methods", "MEDIUM"], capsys)  # published MEDIUM warms up for 10 steps
    assert "Method 'MEDIUM' with --steps 4" in err and "warm-up" in err


def test_a_folder_of_another_configuration_is_refused(reference, tmp_path, capsys):
    out = tmp_path / "other"
    out.mkdir()
    (out / "config.json").write_text((reference / "config.json").read_text())
    steps = SMALL.index("--steps") + 1
    err = _error([*SMALL[:steps], "5", *SMALL[steps + 1:], "--out", str(out)], capsys)
    assert "Refusing to mix results" in err and "steps: stored 4, this run 5" in err and "new --out folder" in err
    err = _error([*SMALL[:-1], "--seed", "1", "--out", str(out)], capsys)
    assert "seed: stored 0, this run 1" in err
    (tmp_path / "file").write_text("")
    assert "is a file" in _error([*SMALL, "--out", str(tmp_path / "file")], capsys)
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    (orphan / "rows-rank0.jsonl").write_text("{}\n")
    assert "no config.json" in _error([*SMALL, "--out", str(orphan)], capsys)
    assert "not a results folder" in _error(["report", "--out", str(tmp_path)], capsys)
