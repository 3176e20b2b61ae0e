"""The `sd15` profile, run without a GPU or the network: the toy weights in a stand-in Hub cache.

`scripts/standin_hub_cache.py` lays out the toy model under every repository id the
`sd15` profile reads (and a harmless stand-in I2P CSV), in the layout huggingface_hub
reads offline. Here the real Hub code path loads from it: the loaders, the fp16
variant, `COURSE_DEVICE`, the memory plan with CUDA faked, and every teacher
notebook top to bottom on `sd15` (outputs not compared: the images are the toy's).
"""

import csv
import importlib.util
import os
import time
from pathlib import Path

import nbformat
import pytest
import torch

from utils import gpu, models

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("standin_hub_cache", ROOT / "scripts" / "standin_hub_cache.py")
standin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(standin)

TEACHER_NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))


@pytest.fixture(scope="session")
def standin_cache(tmp_path_factory):
    """The stand-in Hub cache, built once per test session."""
    return standin.build_standin_cache(tmp_path_factory.mktemp("standin") / "hub")


@pytest.fixture
def offline_on_standin(standin_cache, monkeypatch):
    """huggingface_hub offline, reading the stand-in cache (its constants are read at import: patch them too)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(standin_cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(standin_cache))
    monkeypatch.delenv(models.DEVICE_ENV_VAR, raising=False)
    return standin_cache


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def _snapshot(cache, repo_type, repo_id):
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    return repo / "snapshots" / (repo / "refs" / "main").read_text()


def _same_weights(a, b):
    return all(torch.equal(x.float(), y.float()) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ---------------------------------------------------------------- the cache itself


def test_standin_cache_has_every_sd15_repository_in_the_hub_layout(standin_cache):
    for repo_id in [models.SD15_PIPELINE_REPO, models.SD15_SLD_REPO, models.SD15_CLIP_REPO,
                    models.SD15_SAFETY_CHECKER_REPO]:
        snapshot = _snapshot(standin_cache, "model", repo_id)
        assert len(snapshot.name) == 40 and snapshot.is_dir(), repo_id
        for file in snapshot.rglob("*"):
            if file.is_symlink():  # as huggingface_hub writes them: relative links into blobs/
                assert file.resolve().parent == snapshot.parents[1] / "blobs"
    pipeline = _snapshot(standin_cache, "model", models.SD15_PIPELINE_REPO)
    weights = sorted(p.relative_to(pipeline).as_posix() for p in pipeline.rglob("*.safetensors"))
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in weights
    assert len(weights) == 8  # unet, vae, text_encoder, safety_checker: each with its fp16 variant
    assert not (pipeline / "sld_presets.json").exists()  # the toy's own calibration is not SD's


def test_standin_fp16_variant_is_the_toy_in_half_precision(standin_cache):
    from safetensors.torch import load_file

    unet = _snapshot(standin_cache, "model", models.SD15_PIPELINE_REPO) / "unet"
    full = load_file(unet / "diffusion_pytorch_model.safetensors")
    half = load_file(unet / "diffusion_pytorch_model.fp16.safetensors")
    assert full.keys() == half.keys()
    assert all(half[k].dtype == torch.float16 and torch.equal(half[k], full[k].half()) for k in full)


def test_standin_i2p_has_the_real_columns_and_harmless_prompts(standin_cache):
    from utils import toyworld

    path = _snapshot(standin_cache, "dataset", standin.I2P_REPO) / standin.I2P_FILE
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == standin.I2P_COLUMNS
    assert {"prompt", "categories", "hard", "inappropriate_percentage"} <= set(reader.fieldnames)
    assert sum(r["categories"] == "sexual" and r["hard"] == "1" for r in rows) >= 4  # notebook 04 takes 4
    assert all(not toyworld.unknown_words(r["prompt"]) for r in rows)  # toy-world captions only


def test_standin_refuses_a_folder_in_use(standin_cache):
    with pytest.raises(FileExistsError, match="not empty"):
        standin.build_standin_cache(standin_cache)


# ---------------------------------------------------------------- the sd15 loaders, offline


def test_sd15_pipeline_loads_from_the_standin_and_generates(offline_on_standin, no_gpu):
    from diffusers import StableDiffusionPipeline

    with pytest.warns(models.SlowDeviceWarning, match="minutes per image"):
        pipe = models.load_pipeline("sd15", device="cpu")
    assert isinstance(pipe, StableDiffusionPipeline) and pipe.unet.dtype == torch.float32
    toy = StableDiffusionPipeline.from_pretrained(models.TOY_SD_DIR, use_safetensors=True, local_files_only=True)
    assert _same_weights(pipe.unet, toy.unet)
    out = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (1, 32, 32, 3)


def test_sd15_fp16_variant_loads(offline_on_standin, no_gpu):
    with pytest.warns(models.SlowDeviceWarning):
        pipe = models.load_pipeline("sd15", device="cpu", dtype=torch.float16)
    assert pipe.unet.dtype == torch.float16 and pipe.text_encoder.dtype == torch.float16


def test_sd15_clip_and_checker_load_from_the_standin(offline_on_standin, no_gpu, monkeypatch):
    from transformers import CLIPModel

    monkeypatch.setenv(models.DEVICE_ENV_VAR, "cpu")
    with pytest.warns(models.SlowDeviceWarning):
        clip, processor = models.load_clip("sd15")
        checker, checker_processor = models.load_safety_checker("sd15")
    toy_clip = CLIPModel.from_pretrained(models.TOY_CLIP_DIR, use_safetensors=True, local_files_only=True)
    assert _same_weights(clip, toy_clip) and processor.tokenizer is not None
    assert checker.concept_embeds.shape[1] == checker.visual_projection.out_features
    assert checker_processor.crop_size == {"height": 32, "width": 32}


def test_sld_checkpoint_and_i2p_are_read_offline_from_the_standin(offline_on_standin):
    import json

    from huggingface_hub import hf_hub_download

    index = json.loads(Path(hf_hub_download(models.SD15_SLD_REPO, "model_index.json")).read_text())
    assert index["_class_name"] == "StableDiffusionPipelineSafe"
    assert index["safety_checker"] == ["stable_diffusion_safe", "SafeStableDiffusionSafetyChecker"]
    assert hf_hub_download(models.SD15_SLD_REPO, "unet/diffusion_pytorch_model.safetensors")
    path = hf_hub_download(repo_id=standin.I2P_REPO, filename=standin.I2P_FILE, repo_type="dataset")
    assert Path(path).is_relative_to(offline_on_standin)


# ---------------------------------------------------------------- the memory plan on sd15, CUDA faked


@pytest.mark.parametrize("total_gib", [4.0, 8.0, 15.0, 40.0])
def test_load_pipeline_sd15_applies_exactly_the_planned_switches(total_gib, offline_on_standin, monkeypatch):
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    done = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu, "gpu_memory", lambda device="cuda": (int(total_gib * gpu.GIB), 0))
    # the real apply_memory_plan runs; only the calls that need a real GPU are recorded instead
    monkeypatch.setattr(StableDiffusionPipeline, "to", lambda self, device: done.append(("to", str(device))) or self)
    monkeypatch.setattr(StableDiffusionPipeline, "enable_model_cpu_offload",
                        lambda self, device=None: done.append(("model_cpu_offload", str(device))))
    monkeypatch.setattr(StableDiffusionPipeline, "enable_attention_slicing",
                        lambda self, *args: done.append(("attention_slicing", None)))
    monkeypatch.setattr(AutoencoderKL, "enable_slicing", lambda self: done.append(("vae_slicing", None)))
    monkeypatch.setattr(AutoencoderKL, "enable_tiling", lambda self, *args: done.append(("vae_tiling", None)))

    pipe = models.load_pipeline("sd15")
    plan = gpu.plan_memory(total_gib, "sd15")
    assert pipe.unet.dtype == torch.float16  # fp16 on CUDA, from the fp16 variant
    switched = [name for name, _ in done if name != "to"]
    assert switched == plan.switches()
    assert (("model_cpu_offload", "cuda") in done) == plan.model_cpu_offload
    assert (("to", "cuda") in done) == (not plan.model_cpu_offload)  # never moved after offloading
    assert plan.switches() == {4.0: ["model_cpu_offload", "vae_slicing", "vae_tiling"], 8.0: ["vae_slicing"],
                               15.0: [], 40.0: []}[total_gib]


# ---------------------------------------------------------------- COURSE_DEVICE


def test_course_device_forces_the_device_for_toy(monkeypatch):
    monkeypatch.setenv(models.DEVICE_ENV_VAR, " CPU ")
    monkeypatch.setattr(gpu, "pick_device", lambda: "cuda")  # what toy would pick without it
    assert models.forced_device() == "cpu"
    assert models.resolve_device("toy") == "cpu"
    assert models.resolve_device("toy", "mps") == "mps"  # an explicit argument still wins


def test_course_device_unset_leaves_the_profile_to_choose(monkeypatch, no_gpu):
    monkeypatch.setenv(models.DEVICE_ENV_VAR, "")
    assert models.forced_device() is None
    assert models.resolve_device("toy") == "cpu"
    with pytest.raises(models.ProfileUnavailableError, match="COURSE_DEVICE=cpu"):
        models.resolve_device("sd15")  # refuses, and names the way out


def test_course_device_cpu_lets_sd15_run_with_one_warning(monkeypatch, no_gpu):
    monkeypatch.setenv(models.DEVICE_ENV_VAR, "cpu")
    with pytest.warns(models.SlowDeviceWarning) as caught:
        assert models.resolve_device("sd15") == "cpu"
    assert len(caught) == 1 and "\n" not in str(caught[0].message)


def test_no_slow_warning_on_a_gpu_or_for_toy(monkeypatch, recwarn):
    monkeypatch.setenv(models.DEVICE_ENV_VAR, "cpu")
    assert models.resolve_device("toy") == "cpu"
    assert models.resolve_device("sd15", "cuda") == "cuda"
    assert not [w for w in recwarn if issubclass(w.category, models.SlowDeviceWarning)]


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", "meta", "cpu cuda"])
def test_bad_course_device_names_the_valid_values(bad, monkeypatch):
    monkeypatch.setenv(models.DEVICE_ENV_VAR, bad)
    with pytest.raises(ValueError) as info:
        models.forced_device()
    message = str(info.value)
    assert repr(bad) in message and f"COURSE_DEVICE={bad}" in message
    for valid in ("cpu", "cuda", "cuda:N", "mps"):
        assert valid in message
    with pytest.raises(ValueError, match="Valid devices"):
        models.load_pipeline("toy")


def test_course_device_for_a_missing_gpu_is_a_clear_error(monkeypatch, no_gpu):
    monkeypatch.setenv(models.DEVICE_ENV_VAR, "cuda:0")
    with pytest.raises(models.ProfileUnavailableError, match="no cuda device here"):
        models.forced_device()


def test_preflight_shows_the_forced_device_and_the_slow_warning(monkeypatch, no_gpu, capsys):
    monkeypatch.setenv("COURSE_PROFILE", "sd15")
    monkeypatch.setenv(models.DEVICE_ENV_VAR, "cpu")
    report = models.preflight()
    out = capsys.readouterr().out
    assert (report.device, report.device_reason) == ("cpu", "forced by COURSE_DEVICE=cpu")
    assert "Device:        cpu (forced by COURSE_DEVICE=cpu)" in out
    assert "runs, but takes minutes per image" in out and "loading it will fail" not in out


def test_preflight_reports_a_bad_course_device_without_failing(monkeypatch, no_gpu, capsys):
    monkeypatch.setenv(models.DEVICE_ENV_VAR, "gpu")
    report = models.preflight()
    assert report.device == "cpu" and report.device_reason.startswith("ERROR: Unknown device 'gpu'")
    assert "Valid devices: cpu, cuda" in capsys.readouterr().out


def test_preflight_on_a_gpu_forced_to_the_cpu_still_names_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (14 * gpu.GIB, 15 * gpu.GIB))
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setenv("COURSE_PROFILE", "sd15")
    monkeypatch.setenv(models.DEVICE_ENV_VAR, "cpu")
    report = models.preflight(verbose=False)
    assert (report.device, report.gpu_name, report.dtype) == ("cpu", "Tesla T4", "float32")
    assert report.memory_plan.switches() == [] and "no GPU" in report.memory_plan.reason
    assert "Tesla T4, 15.0 GiB total" in models.format_preflight(report)


@pytest.mark.parametrize("value, expected", [(None, 50), ("", 50), ("0", 50), ("no", 50),
                                             ("1", 4), ("true", 4), (" YES ", 4), ("on", 4)])
def test_quick_shrinks_only_when_asked(value, expected, monkeypatch):
    if value is None:
        monkeypatch.delenv(models.QUICK_ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(models.QUICK_ENV_VAR, value)
    assert models.quick(50, 4) == expected


# ---------------------------------------------------------------- every teacher notebook on sd15


@pytest.mark.parametrize("path", TEACHER_NOTEBOOKS, ids=lambda p: p.name)
def test_teacher_notebook_runs_on_sd15_standins(path, standin_cache):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "COURSE_PROFILE": "sd15", models.DEVICE_ENV_VAR: "cpu", "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(standin_cache), models.QUICK_ENV_VAR: "1"}
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(ROOT)}})
    client.km = client.create_kernel_manager()
    client.km.extra_env = env  # nbclient passes this on to the kernel
    start = time.monotonic()
    client.execute(env=env)
    print(f"{path.name} on sd15 stand-ins: {time.monotonic() - start:.0f} s")
    errors = [f"cell {k}: {o.ename}: {o.evalue}\n{cell.source[:400]}"
              for k, cell in enumerate(nb.cells) if cell.cell_type == "code"
              for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} on sd15:\n\n" + "\n\n".join(errors)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Profile:       sd15" in printed and "forced by COURSE_DEVICE=cpu" in printed  # it ran on sd15
