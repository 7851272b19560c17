"""The Python side of bench/tensor-engine.ts: the same workloads through PyTorch, on the same
libtorch, printed as JSON. Run by the TypeScript benchmark; not meant to be run alone.

usage: python3 bench/tensor_engine.py THREADS_SMALL THREADS_KERNELS REPEATS
"""
import json
import sys
import time

import torch

threads_small, threads_kernels, repeats = (int(a) for a in sys.argv[1:4])
N = 100_000


def per_op(fn, n=N):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6  # microseconds per op


torch.set_num_threads(threads_small)
a = torch.ones(4)
b = torch.ones(4)
m = torch.ones(4, 4)


def add(n):
    for _ in range(n):
        a + b


def mul_scalar(n):
    for _ in range(n):
        a * 2.5


def matmul_small(n):
    for _ in range(n):
        m @ m


def reshape(n):
    for _ in range(n):
        m.reshape(16)


def chain(n):  # five dependent ops, as model code does
    for _ in range(n // 5):
        torch.relu(((a + b) * 2.0 - 1.0).sigmoid())


results = {"torch": torch.__version__, "small": {}, "kernels": {}}
for name, fn in [("add", add), ("mul_scalar", mul_scalar), ("matmul_4x4", matmul_small), ("reshape", reshape), ("chain5", chain)]:
    fn(1000)
    results["small"][name] = per_op(fn)

torch.set_num_threads(threads_kernels)


def gflops(fn, flops, reps=20):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


x = torch.randn(1024, 1024)
y = torch.randn(1024, 1024)
results["kernels"]["matmul_1024"] = gflops(lambda: x @ y, 2 * 1024**3)
img = torch.randn(8, 64, 64, 64)
w = torch.randn(64, 64, 3, 3)
conv_flops = 2 * 8 * 64 * 64 * 64 * 64 * 9
results["kernels"]["conv2d_8x64x64x64_k3"] = gflops(lambda: torch.nn.functional.conv2d(img, w, padding=1), conv_flops)
print(json.dumps(results))
