"""Python side of bench/models.ts: diffusers 0.20 UNet forward+backward and VAE encode on the
configs of bench/models_config.json, on the same libtorch. Prints JSON (seconds, best of N).

usage: PYTHONPATH=<diffusers 0.20 src> python3 bench/models.py FIXTURES_DIR THREADS REPEATS
"""
import json
import os
import sys
import time

import torch
import diffusers
from diffusers import AutoencoderKL, UNet2DConditionModel

fixtures, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
cfg = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "models_config.json")))


def build(cls, spec):
    c = spec["config"]
    if isinstance(c, str):
        return cls.from_pretrained(os.path.join(fixtures, c))
    return cls.from_config({k: v for k, v in c.items() if not k.startswith("_")})


def best(fn):
    fn()
    t = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


out = {"diffusers": diffusers.__version__, "torch": torch.__version__, "unet": {}, "vae": {}}
g = torch.Generator().manual_seed(0)
for name, spec in cfg["unet"].items():
    unet = build(UNet2DConditionModel, spec)
    b, s, ctx = spec["batch"], spec["latent"], spec["context"]
    x = torch.randn(b, unet.config.in_channels, s, s, generator=g)
    ehs = torch.randn(b, ctx, unet.config.cross_attention_dim, generator=g)
    t = torch.tensor([10, 500][:b] + [999] * max(0, b - 2))

    def step():
        unet.zero_grad(set_to_none=True)
        unet(x, t, ehs).sample.float().pow(2).mean().backward()

    out["unet"][name] = best(step)
for name, spec in cfg["vae"].items():
    vae = build(AutoencoderKL, spec)
    img = torch.rand(spec["batch"], 3, spec["image"], spec["image"], generator=g) * 2 - 1

    def enc():
        with torch.no_grad():
            vae.encode(img).latent_dist.sample(generator=g)

    out["vae"][name] = best(enc)
print(json.dumps(out))
