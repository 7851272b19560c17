"""Python side of bench/gradient-checkpointing.ts: one diffusers 0.20 UNet forward+backward
measurement (one case, checkpointing on or off) in this fresh process, on the same libtorch.
Prints JSON: best time of N, the resident memory after building the model, and the peak.

usage: PYTHONPATH=<diffusers 0.20 src> python3 bench/gradient_checkpointing.py CASE on|off THREADS REPEATS
"""
import json
import os
import resource
import sys
import time

import torch
from diffusers import UNet2DConditionModel

case, mode, threads, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
spec = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpointing_config.json")))[case]


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


torch.manual_seed(0)
unet = UNet2DConditionModel.from_config({k: v for k, v in spec["config"].items() if not k.startswith("_")})
unet.train()
if mode == "on":
    unet.enable_gradient_checkpointing()
b, s, ctx = spec["batch"], spec["latent"], spec["context"]
g = torch.Generator().manual_seed(0)
x = torch.randn(b, unet.config.in_channels, s, s, generator=g)
ehs = torch.randn(b, ctx, unet.config.cross_attention_dim, generator=g)
t = torch.tensor([10, 500][:b] + [999] * max(0, b - 2))
params_mb = sum(p.numel() for p in unet.parameters()) * 4 / 2**20
base = rss_mb()


def step():
    unet.zero_grad(set_to_none=True)
    unet(x, t, ehs).sample.float().pow(2).mean().backward()


best = float("inf")
for i in range(repeats + 1):
    t0 = time.perf_counter()
    step()
    if i > 0:
        best = min(best, time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": best, "base_mb": base, "peak_mb": peak, "params_mb": params_mb}))
