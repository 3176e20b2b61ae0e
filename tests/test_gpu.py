"""Tests of utils.gpu: the choices are tested on the CPU by pretending to be other machines."""

import random
import sys
import types

import numpy as np
import pytest
import torch

from utils import gpu


# ---------------------------------------------------------------- where, device, dtype


def test_where_am_i_local(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    assert gpu.where_am_i() == "local"


def test_where_am_i_colab(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert gpu.where_am_i() == "colab"


def test_where_am_i_kaggle(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert gpu.where_am_i() == "kaggle"


def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu.pick_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert gpu.pick_device() == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert gpu.pick_device() == "cpu"


@pytest.mark.parametrize("device", ["cpu", "mps", torch.device("cpu")])
def test_pick_dtype_full_precision_off_cuda(device):
    assert gpu.pick_dtype(device) == torch.float32
    assert gpu.pick_dtype(device, prefer_bf16=True) == torch.float32


@pytest.mark.parametrize(
    "capability, prefer_bf16, expected",
    [
        ((7, 5), False, torch.float16),  # T4
        ((7, 5), True, torch.float16),  # T4 has no native bfloat16
        ((8, 0), False, torch.float16),  # A100: fp16 unless asked
        ((8, 0), True, torch.bfloat16),
        ((9, 0), True, torch.bfloat16),  # H100
    ],
)
def test_pick_dtype_cuda(monkeypatch, capability, prefer_bf16, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert gpu.pick_dtype("cuda", prefer_bf16=prefer_bf16) == expected


# ---------------------------------------------------------------- seeds


def test_seed_everything_repeats_random_numbers():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    assert gpu.seed_everything(123) == 123
    first = draw()
    gpu.seed_everything(123)
    second = draw()
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])
    gpu.seed_everything(124)
    assert not torch.equal(draw()[2], first[2])


@pytest.mark.parametrize("bad", [-1, 1.5, "0", None, True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        gpu.seed_everything(bad)


def test_make_generator_same_seed_same_noise():
    a = torch.randn(4, generator=gpu.make_generator(7))
    b = torch.randn(4, generator=gpu.make_generator(7))
    c = torch.randn(4, generator=gpu.make_generator(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert gpu.make_generator(0).device == torch.device("cpu")


# ---------------------------------------------------------------- timer and memory


def test_timer_measures_and_prints(capsys):
    with gpu.timer("sleep", device="cpu") as timing:
        sum(range(10_000))
    assert timing.label == "sleep"
    assert 0 <= timing.seconds < 5
    assert capsys.readouterr().out.startswith("sleep: ")


def test_timer_silent_without_label(capsys):
    with gpu.timer(device="cpu") as timing:
        pass
    assert timing.seconds >= 0
    assert capsys.readouterr().out == ""


def test_timer_synchronises_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    with gpu.timer(device="cuda", verbose=False):
        assert len(calls) == 1  # before the block
    assert len(calls) == 2  # and after it


def test_peak_memory_on_cpu_sees_a_freed_allocation():
    import psutil

    before = gpu.peak_memory("cpu")
    rss = psutil.Process().memory_info().rss
    size = max(before - rss, 0) + 256 * 2**20  # enough to raise the peak above any earlier one
    block = torch.ones(size // 4, dtype=torch.float32)  # touched, so resident
    del block
    gpu.free_memory()
    after = gpu.peak_memory("cpu")
    assert isinstance(after, int)
    assert after >= rss + 0.9 * size, "the peak must remember memory that has since been freed"
    assert psutil.Process().memory_info().rss < after
    gpu.reset_peak_memory("cpu")  # must not fail without a GPU


def test_gpu_memory_without_gpu_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        gpu.gpu_memory()


# ---------------------------------------------------------------- memory plan


def test_plan_memory_sd15_fits_a_colab_t4_without_switches():
    t4_gib = 15095 / 1024  # what torch.cuda.mem_get_info reports on a Colab T4
    plan = gpu.plan_memory(t4_gib, "sd15")
    assert plan.switches() == []
    assert "14.7 GiB" in plan.reason


@pytest.mark.parametrize(
    "total_gib, expected",
    [
        (80.0, []),
        (12.0, []),
        (11.9, ["vae_slicing"]),
        (8.0, ["vae_slicing"]),
        (6.0, ["vae_slicing"]),
        (5.9, ["model_cpu_offload", "vae_slicing", "vae_tiling"]),
        (4.0, ["model_cpu_offload", "vae_slicing", "vae_tiling"]),
        (3.9, ["model_cpu_offload", "attention_slicing", "vae_slicing", "vae_tiling"]),
        (0.0, ["model_cpu_offload", "attention_slicing", "vae_slicing", "vae_tiling"]),
    ],
)
def test_plan_memory_sd15_thresholds(total_gib, expected):
    plan = gpu.plan_memory(total_gib, "sd15")
    assert plan.switches() == expected
    assert plan.reason


def test_attention_slicing_only_as_a_last_resort():
    # it slows PyTorch 2's fused attention: never on where the model fits
    for total_gib in (4.0, 6.0, 8.0, 15.0, 24.0):
        assert not gpu.plan_memory(total_gib, "sd15").attention_slicing


@pytest.mark.parametrize("total_gib", [None, 2.0, 15.0])
def test_plan_memory_toy_never_needs_a_switch(total_gib):
    plan = gpu.plan_memory(total_gib, "toy")
    assert plan.switches() == []
    assert "toy" in plan.reason


def test_plan_memory_without_gpu():
    plan = gpu.plan_memory(None, "sd15")
    assert plan.switches() == []
    assert "no GPU" in plan.reason


@pytest.mark.parametrize("profile", ["auto", "SD15", "sdxl"])
def test_plan_memory_rejects_unresolved_or_unknown_profiles(profile):
    with pytest.raises(ValueError, match="'toy' or 'sd15'"):
        gpu.plan_memory(15.0, profile)


def test_plan_memory_rejects_negative_memory():
    with pytest.raises(ValueError, match="at least 0"):
        gpu.plan_memory(-1.0, "sd15")


class RecordingPipe:
    """Stands in for a diffusers pipeline: records which switches were called."""

    def __init__(self):
        self.calls = []
        self.vae = types.SimpleNamespace(
            enable_slicing=lambda: self.calls.append("vae.enable_slicing"),
            enable_tiling=lambda: self.calls.append("vae.enable_tiling"),
        )

    def to(self, device):
        self.calls.append(f"to({device})")
        return self

    def enable_model_cpu_offload(self, device=None):
        self.calls.append(f"enable_model_cpu_offload({device})")

    def enable_attention_slicing(self):
        self.calls.append("enable_attention_slicing")


def test_apply_memory_plan_without_switches_just_moves():
    pipe = RecordingPipe()
    assert gpu.apply_memory_plan(pipe, gpu.plan_memory(15.0, "sd15"), "cuda") is pipe
    assert pipe.calls == ["to(cuda)"]


def test_apply_memory_plan_offload_does_not_move():
    pipe = RecordingPipe()
    gpu.apply_memory_plan(pipe, gpu.plan_memory(3.0, "sd15"), "cuda")
    assert pipe.calls == [
        "enable_model_cpu_offload(cuda)",
        "enable_attention_slicing",
        "vae.enable_slicing",
        "vae.enable_tiling",
    ]


def test_apply_memory_plan_refuses_offload_to_cpu():
    with pytest.raises(ValueError, match="GPU"):
        gpu.apply_memory_plan(RecordingPipe(), gpu.plan_memory(3.0, "sd15"), "cpu")


def test_apply_memory_plan_uses_diffusers_own_vae_switches():
    # a real (tiny, random) diffusers VAE: the switches exist under these names
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4)
    pipe = types.SimpleNamespace(vae=vae, to=lambda device: pipe)
    gpu.apply_memory_plan(pipe, gpu.MemoryPlan(vae_slicing=True, vae_tiling=True), "cpu")
    assert vae.use_slicing and vae.use_tiling


# ---------------------------------------------------------------- on a real GPU (skipped without one)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_preflight_reports_the_gpu():
    from utils import models
    report = models.preflight(verbose=False)
    assert report.device == "cuda" and report.gpu_name
    assert 0 < report.gpu_free_gib <= report.gpu_total_gib
    total, free = gpu.gpu_memory()
    assert 0 < free <= total


@needs_cuda
def test_cuda_dtype_generator_and_timer():
    assert gpu.pick_dtype("cuda") == torch.float16
    major = torch.cuda.get_device_capability()[0]
    assert gpu.pick_dtype("cuda", prefer_bf16=True) == (torch.bfloat16 if major >= 8 else torch.float16)
    a = torch.randn(8, generator=gpu.make_generator(3, "cuda"), device="cuda")
    b = torch.randn(8, generator=gpu.make_generator(3, "cuda"), device="cuda")
    assert torch.equal(a, b)
    x = torch.randn(2048, 2048, device="cuda")
    with gpu.timer(device="cuda", verbose=False) as timing:
        for _ in range(10):
            x = x @ x / 2048
    assert timing.seconds > 0


@needs_cuda
def test_cuda_peak_memory_sees_an_allocation_and_free_memory_returns_it():
    gpu.free_memory()
    gpu.reset_peak_memory("cuda")
    before = gpu.peak_memory("cuda")
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")  # 256 MiB
    assert gpu.peak_memory("cuda") - before >= 256 * 2**20
    del block
    gpu.free_memory()
    assert torch.cuda.memory_reserved() < 256 * 2**20
