"""Tests of utils.models: profile choice, clear errors, and the loaders (offline, on the CPU).

The real toy model's quality is tested with the toy world (tests/test_toy_model.py).
Here the loaders run against a tiny random pipeline built in a temporary folder,
laid out exactly as the shipped toy model is.
"""

import json
import sys

import pytest
import torch

from utils import gpu, models


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def gpu_here(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.fixture
def no_profile_env(monkeypatch):
    monkeypatch.delenv(models.PROFILE_ENV_VAR, raising=False)


def hub(monkeypatch, reachable):
    calls = []

    def fake(timeout=3.0):
        calls.append(timeout)
        return reachable

    monkeypatch.setattr(models, "hub_reachable", fake)
    return calls


# ---------------------------------------------------------------- choosing the profile


@pytest.mark.parametrize(
    "has_cuda, hub_ok, expected",
    [(False, False, "toy"), (False, True, "toy"), (True, False, "toy"), (True, True, "sd15")],
)
def test_choose_auto_profile_needs_gpu_and_hub(has_cuda, hub_ok, expected):
    profile, reason = models.choose_auto_profile(has_cuda, hub_ok)
    assert profile == expected
    assert reason


def test_auto_reasons_name_what_is_missing():
    assert "no CUDA GPU" in models.choose_auto_profile(False, True)[1]
    assert "Hub is not reachable" in models.choose_auto_profile(True, False)[1]


def test_default_is_auto(no_gpu, no_profile_env, monkeypatch):
    calls = hub(monkeypatch, True)
    profile, reason = models.resolve_profile()
    assert profile == "toy"
    assert "auto picked toy" in reason and "no CUDA GPU" in reason
    assert calls == []  # without a GPU the Hub is not even asked


def test_auto_with_gpu_and_hub_picks_sd15(gpu_here, no_profile_env, monkeypatch):
    calls = hub(monkeypatch, True)
    assert models.resolve_profile("auto")[0] == "sd15"
    assert len(calls) == 1


def test_auto_with_gpu_but_offline_picks_toy(gpu_here, monkeypatch):
    hub(monkeypatch, False)
    profile, reason = models.resolve_profile("auto")
    assert profile == "toy"
    assert "not reachable" in reason


def test_env_var_chooses_when_no_argument(no_gpu, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", " SD15 ")
    profile, reason = models.resolve_profile()
    assert profile == "sd15"
    assert "COURSE_PROFILE=SD15" in reason


def test_argument_beats_env_var(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "sd15")
    assert models.resolve_profile("toy") == ("toy", "asked for with profile='toy'")


def test_env_var_auto(no_gpu, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "auto")
    profile, reason = models.resolve_profile()
    assert profile == "toy"
    assert "COURSE_PROFILE=auto" in reason


def test_empty_env_var_means_unset(no_gpu, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "")
    assert models.resolve_profile()[0] == "toy"


@pytest.mark.parametrize("given", ["toy ", "TOY", " Toy"])
def test_spaces_and_case_in_a_profile_name_are_forgiven(given):
    assert models.resolve_profile(given)[0] == "toy"


@pytest.mark.parametrize("bad", ["sdxl", "", "toyy", 3])
def test_unknown_profile_lists_the_valid_ones(bad):
    with pytest.raises(ValueError) as info:
        models.resolve_profile(bad)
    message = str(info.value)
    assert repr(bad) in message
    for name in models.PROFILES:
        assert name in message


def test_unknown_profile_from_env_says_where_it_came_from(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "big")
    with pytest.raises(ValueError, match="COURSE_PROFILE=big"):
        models.resolve_profile()


# ---------------------------------------------------------------- the Hub check never hangs


def test_hub_reachable_is_false_at_once_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "_hub_answer", (0.0, True))

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("the Hub was asked although HF_HUB_OFFLINE is set")

    monkeypatch.setattr("huggingface_hub.HfApi.model_info", must_not_be_called)
    assert models.hub_reachable() is False


def test_hub_reachable_gives_up_after_the_timeout(monkeypatch):
    import time

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(models, "_hub_answer", None)
    monkeypatch.setattr("huggingface_hub.HfApi.model_info", lambda self, repo, timeout=None: time.sleep(30))
    start = time.monotonic()
    assert models.hub_reachable(timeout=0.2) is False
    assert time.monotonic() - start < 5


def test_hub_reachable_true_when_the_hub_answers_and_remembers_it(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(models, "_hub_answer", None)
    asked = []
    monkeypatch.setattr(
        "huggingface_hub.HfApi.model_info",
        lambda self, repo, timeout=None: asked.append(repo),
    )
    assert models.hub_reachable() is True
    assert models.hub_reachable() is True
    assert asked == [models.SD15_PIPELINE_REPO]


def test_hub_errors_mean_unreachable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(models, "_hub_answer", None)

    def fail(self, repo, timeout=None):
        raise OSError("Name or service not known")

    monkeypatch.setattr("huggingface_hub.HfApi.model_info", fail)
    assert models.hub_reachable() is False


# ---------------------------------------------------------------- clear errors


def test_default_dtypes():
    assert models.default_dtype("toy", "cpu") == torch.float32
    assert models.default_dtype("sd15", "cpu") == torch.float32


def test_diffusers_dtype_keyword_follows_the_installed_version(monkeypatch):
    from importlib import metadata

    monkeypatch.setattr(metadata, "version", lambda name: "0.39.2")
    assert models.diffusers_dtype_kwarg(torch.float16) == {"torch_dtype": torch.float16}
    monkeypatch.setattr(metadata, "version", lambda name: "0.42.1")
    assert models.diffusers_dtype_kwarg(torch.float16) == {"dtype": torch.float16}


@pytest.mark.parametrize("total_gib", [4.0, 8.0, 15.0, 40.0])
def test_load_pipeline_applies_the_memory_plan_for_the_gpu(total_gib, monkeypatch):
    # CUDA faked: the plan is chosen from the GPU's size and handed to apply_memory_plan

    applied = []
    monkeypatch.setattr(gpu, "gpu_memory", lambda device="cuda": (int(total_gib * gpu.GIB), 0))
    monkeypatch.setattr(gpu, "apply_memory_plan", lambda pipe, plan, device: applied.append((plan, device)) or pipe)
    pipe = models.load_pipeline("toy", device="cuda", dtype=torch.float32)
    assert applied == [(gpu.plan_memory(total_gib, "toy"), "cuda")]
    assert pipe is not None


@pytest.mark.parametrize("loader", [models.load_pipeline, models.load_clip, models.load_safety_checker])
def test_toy_not_built_yet_is_a_clear_error(loader, monkeypatch, tmp_path):
    monkeypatch.setattr(models, "TOY_SD_DIR", tmp_path / "toy-sd")
    monkeypatch.setattr(models, "TOY_CLIP_DIR", tmp_path / "toy-clip")
    assert not models.toy_model_built()
    with pytest.raises(models.ToyModelNotBuiltError) as info:
        loader("toy")
    assert isinstance(info.value, FileNotFoundError)
    assert "not built yet" in str(info.value)
    assert "python -m utils.toy.train" in str(info.value)


@pytest.mark.parametrize("loader", [models.load_pipeline, models.load_clip, models.load_safety_checker])
def test_sd15_without_gpu_says_what_to_do(loader, no_gpu, monkeypatch):
    def must_not_download(*args, **kwargs):
        raise AssertionError("tried to download although there is no GPU")

    monkeypatch.setattr(models, "_from_hub", must_not_download)
    with pytest.raises(models.ProfileUnavailableError) as info:
        loader("sd15")
    message = str(info.value)
    assert "needs a CUDA GPU" in message
    assert "toy" in message
    assert "Change runtime type" in message


@pytest.mark.parametrize("loader", [models.load_pipeline, models.load_clip, models.load_safety_checker])
def test_sd15_offline_says_what_to_do(loader, gpu_here, monkeypatch):
    # a GPU, but no network: the real loaders run until huggingface_hub refuses
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", "/nonexistent/empty-hf-cache")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", "/nonexistent/empty-hf-cache/hub")
    with pytest.raises(models.ProfileUnavailableError) as info:
        loader("sd15")
    message = str(info.value)
    assert "Could not load" in message
    assert "toy" in message and "hf auth login" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no deep stack trace


def test_hub_error_message_for_a_gated_model():
    err = OSError("401 Client Error: Unauthorized for url: https://huggingface.co/...")
    message = models._hub_help("some/repo", err)
    assert "'some/repo'" in message and "401 Client Error" in message
    assert "hf auth login" in message and "huggingface-cli login" in message


def test_out_of_gpu_memory_is_a_clear_error():
    class FullGPU:
        def to(self, device):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    with pytest.raises(models.ProfileUnavailableError, match="ran out of memory"):
        models._place_on(FullGPU(), "cuda")


# ---------------------------------------------------------------- loading a toy-shaped pipeline


def _tiny_tokenizer(folder):
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


@pytest.fixture(scope="module")
def tiny_toy_dirs(tmp_path_factory):
    """A tiny random pipeline and CLIP, saved with the toy model's layout."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    tokenizer = _tiny_tokenizer(root / "vocab")
    text = dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1, projection_dim=8)
    text_config = dict(text, vocab_size=len(tokenizer), max_position_embeddings=16)
    vision_config = dict(text, image_size=32, patch_size=8)
    clip_config = CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=8)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(
            block_out_channels=(8, 8),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            norm_num_groups=4,
        ),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text_config)),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(
            block_out_channels=(8, 16),
            layers_per_block=1,
            sample_size=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=16,
            norm_num_groups=4,
            attention_head_dim=2,
        ),
        scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1),
        safety_checker=StableDiffusionSafetyChecker(clip_config),
        feature_extractor=image_processor,
    )
    pipe.save_pretrained(root / "toy-sd", safe_serialization=True)
    CLIPModel(clip_config).save_pretrained(root / "toy-clip", safe_serialization=True)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(root / "toy-clip")
    return root


@pytest.fixture
def tiny_toy(tiny_toy_dirs, monkeypatch):
    monkeypatch.setattr(models, "TOY_SD_DIR", tiny_toy_dirs / "toy-sd")
    monkeypatch.setattr(models, "TOY_CLIP_DIR", tiny_toy_dirs / "toy-clip")
    assert models.toy_model_built()
    return tiny_toy_dirs


def test_load_pipeline_toy(tiny_toy, no_gpu, capfd):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    pipe = models.load_pipeline("toy")
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.device == torch.device("cpu") and pipe.unet.dtype == torch.float32
    assert pipe.safety_checker is not None  # never silently disabled
    assert pipe._progress_bar_config == {"disable": True}
    assert diffusers_logging.is_progress_bar_enabled()  # the loaders' quiet mode is switched back
    assert "torch_dtype" not in capfd.readouterr().err  # no deprecation warning from our call
    out = pipe(
        "a red circle",
        num_inference_steps=2,
        height=16,
        width=16,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    assert out.images.shape == (1, 16, 16, 3)
    assert "it/s]" not in capfd.readouterr().err  # the denoising progress bar is off


def test_load_pipeline_reads_the_env_var(tiny_toy, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "toy")
    assert models.load_pipeline().unet.dtype == torch.float32


def test_load_pipeline_toy_dtype_argument(tiny_toy):
    pipe = models.load_pipeline("toy", device="cpu", dtype=torch.bfloat16)
    assert pipe.unet.dtype == torch.bfloat16


def test_load_clip_toy(tiny_toy, no_gpu):
    import numpy as np
    from transformers import CLIPModel, CLIPProcessor

    model, processor = models.load_clip("toy")
    assert isinstance(model, CLIPModel) and isinstance(processor, CLIPProcessor)
    assert not model.training
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    inputs = processor(text=["a red circle", "a blue square"], images=[image], return_tensors="pt", padding=True)
    with torch.no_grad():
        outputs = model(**inputs)
    assert outputs.text_embeds.shape == (2, 8)
    assert outputs.logits_per_image.shape == (1, 2)


def test_load_safety_checker_toy(tiny_toy, no_gpu):
    import numpy as np
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    checker, processor = models.load_safety_checker("toy")
    assert isinstance(checker, StableDiffusionSafetyChecker) and isinstance(processor, CLIPImageProcessor)
    assert checker.dtype == torch.float32 and not checker.training
    images = np.zeros((1, 32, 32, 3), dtype=np.float32)
    clip_input = processor(list((images * 255).astype("uint8")), return_tensors="pt").pixel_values
    checked, flagged = checker(images=images, clip_input=clip_input)
    assert len(flagged) == 1


def test_toy_loaders_never_touch_the_network(tiny_toy, no_gpu, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the toy profile tried to use the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    models.load_pipeline("toy")
    models.load_clip("toy")
    models.load_safety_checker("toy")


def test_importing_utils_does_not_import_diffusers():
    import subprocess

    code = "import sys, utils; print('diffusers' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ---------------------------------------------------------------- on a real GPU (skipped without one)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _two_steps(pipe):
    return pipe(
        "a red circle",
        num_inference_steps=2,
        height=16,
        width=16,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images


@needs_cuda
def test_cuda_load_pipeline_toy(tiny_toy):
    pipe = models.load_pipeline("toy")
    assert pipe.device.type == "cuda" and pipe.unet.dtype == torch.float32
    assert _two_steps(pipe).shape == (1, 16, 16, 3)


@needs_cuda
def test_cuda_every_memory_switch_on_a_real_pipeline(tiny_toy):
    from diffusers import StableDiffusionPipeline


    pipe = StableDiffusionPipeline.from_pretrained(models.TOY_SD_DIR, use_safetensors=True, local_files_only=True)
    plan = gpu.plan_memory(2.0, "sd15")
    assert plan.switches() == ["model_cpu_offload", "attention_slicing", "vae_slicing", "vae_tiling"]
    gpu.apply_memory_plan(pipe, plan, "cuda")
    assert pipe.unet.device.type == "cpu"  # offloaded: it moves to the GPU only while it runs
    assert pipe._execution_device.type == "cuda"
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    assert _two_steps(pipe).shape == (1, 16, 16, 3)


# ---------------------------------------------------------------- preflight


def test_preflight_on_this_cpu_machine_is_honest(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    report = models.preflight()
    out = capsys.readouterr().out
    assert report.device == "cpu"
    assert report.gpu_name is None and report.gpu_total_gib is None
    assert report.profile == "toy" and report.auto_profile == "toy"
    assert report.dtype == "float32"
    assert report.torch == torch.__version__
    assert "there is no GPU here, so the toy profile will be used" in out
    for field in ("Python:", "torch:", "diffusers:", "transformers:", "Profile:", "auto picks:", "Memory plan:"):
        assert field in out


def test_preflight_warns_when_sd15_is_asked_for_without_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("COURSE_PROFILE", "sd15")
    report = models.preflight()
    assert report.profile == "sd15"
    assert "needs a CUDA GPU" in capsys.readouterr().out


def test_preflight_quiet(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    models.preflight(verbose=False)
    assert capsys.readouterr().out == ""


def test_preflight_on_a_pretend_t4(monkeypatch):
    # the CUDA branch of the report, with the GPU's answers faked
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (14 * gpu.GIB, 15 * gpu.GIB))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr("utils.models.hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setenv("COURSE_PROFILE", "auto")
    report = models.preflight(verbose=False)
    assert (report.device, report.gpu_name, report.gpu_total_gib) == ("cuda", "Tesla T4", 15.0)
    assert (report.profile, report.auto_profile, report.dtype) == ("sd15", "sd15", "float16")
    assert report.memory_plan.switches() == []
    assert "Tesla T4, 15.0 GiB total, 14.0 GiB free" in models.format_preflight(report)




def test_a_typo_in_course_profile_still_prints_the_report(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("COURSE_PROFILE", "toyy")
    report = models.preflight()
    out = capsys.readouterr().out
    assert report.profile == "invalid"
    assert "Unknown profile 'toyy'" in out and "Valid profiles: toy, sd15, auto" in out
    assert "Memory plan:" in out and "Python:" in out  # the rest of the report is there
    with pytest.raises(ValueError, match="Valid profiles"):
        models.load_pipeline()


def test_utils_preflight_is_the_models_one():
    import utils
    assert utils.preflight is models.preflight
