"""Time the toy pipeline and check that a seed gives the same image, bit for bit.

    python scripts/benchmark.py            # on this machine's CPU (or GPU, if it has one)
    python scripts/benchmark.py --threads 2

Prints numbers; it asserts nothing about speed (machines are noisy). Targets on 2 CPU
cores: pipeline load <= 2 s; 4 images at 20 steps with guidance <= 2 s.
"""

import argparse
import statistics
import time

import numpy as np
import torch

from utils import gpu, models


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        gpu.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = gpu.pick_device()
    print(f"device {device}, torch threads {torch.get_num_threads()}, torch {torch.__version__}")

    first, _ = median_seconds(lambda: models.load_pipeline("toy", device=device), 1)
    load, load_min = median_seconds(lambda: models.load_pipeline("toy", device=device), 3)
    print(f"pipeline load: first {first:.2f} s (imports included), then median {load:.2f} s "
          f"(min {load_min:.2f} s)")

    pipe = models.load_pipeline("toy", device=device)
    gpu.reset_peak_memory(device)

    def four_images(seed=0):
        generator = gpu.make_generator(seed, device)
        return pipe(["a small red circle", "a large blue square", "a green diamond on a white background",
                     "a purple square on a black background"], num_inference_steps=20, guidance_scale=7.5,
                    generator=generator, output_type="np").images

    four_images()  # warm-up
    gen, gen_min = median_seconds(four_images, args.repeats)
    print(f"4 images, 20 steps, guidance 7.5: median {gen:.2f} s (min {gen_min:.2f} s), "
          f"{4 / gen:.1f} images/s")
    one, _ = median_seconds(lambda: pipe("a red circle", num_inference_steps=20,
                                         generator=gpu.make_generator(0, device)), args.repeats)
    print(f"1 image, 20 steps: median {one:.2f} s")
    print(f"memory: {gpu.peak_memory(device) / 2**20:.0f} MiB "
          f"({'peak allocated on the GPU' if device == 'cuda' else 'process RSS'})")

    same = np.array_equal(four_images(seed=1), four_images(seed=1))
    other = not np.array_equal(four_images(seed=1), four_images(seed=2))
    print(f"same seed, same images bit for bit: {same}; another seed, other images: {other}")


if __name__ == "__main__":
    main()
