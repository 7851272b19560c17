"""Python side of bench/train-step.ts: one Diffusion-DPO optimizer step as train.py computes it
(VAE posterior sample x scaling factor, shared noise and timesteps per pair, add_noise, the trained
UNet and the frozen reference, the DPO loss, backward, clip, AdamW) with diffusers 0.20 on the same
libtorch. Text conditioning is a fixed random tensor on both sides (transformers 4.30 is not
available here). Prints JSON: seconds per step (best of N) and peak RSS.

usage: PYTHONPATH=<diffusers 0.20> python3 bench/train_step.py FIXTURES THREADS REPEATS
"""
import copy
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

fixtures, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
cfg = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "models_config.json")))
sched = DDPMScheduler.from_pretrained(os.path.join(fixtures, "tiny-sd", "scheduler"))


def build(cls, c):
    if isinstance(c, str):
        return cls.from_pretrained(os.path.join(fixtures, c))
    return cls.from_config({k: v for k, v in c.items() if not k.startswith("_")})


out = {}
for name, res in [("tiny", 32), ("mid", 256)]:
    unet = build(UNet2DConditionModel, cfg["unet"][name]["config"])
    ref = copy.deepcopy(unet).requires_grad_(False)
    vae = build(AutoencoderKL, cfg["vae"][name]["config"]).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)
    for bsz in (1, 4):
        g = torch.Generator().manual_seed(0)
        pixels = torch.rand(bsz, 6, res, res, generator=g) * 2 - 1
        ehs = torch.randn(2 * bsz, 77, unet.config.cross_attention_dim, generator=g)

        def step():
            feed = torch.cat(pixels.chunk(2, dim=1))
            with torch.no_grad():
                latents = vae.encode(feed).latent_dist.sample() * vae.config.scaling_factor
            noise = torch.randn_like(latents)
            t = torch.randint(0, 1000, (latents.shape[0],))
            t = t.chunk(2)[0].repeat(2)
            noise = noise.chunk(2)[0].repeat(2, 1, 1, 1)
            noisy = sched.add_noise(latents, noise, t)
            pred = unet(noisy, t, ehs).sample
            ml = (pred - noise).pow(2).mean(dim=[1, 2, 3])
            mw, mlo = ml.chunk(2)
            with torch.no_grad():
                rp = ref(noisy, t, ehs).sample.detach()
                rl = (rp - noise).pow(2).mean(dim=[1, 2, 3])
                rw, rlo = rl.chunk(2)
            inside = -0.5 * 5000 * ((mw - mlo) - (rw - rlo))
            loss = -F.logsigmoid(inside).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            opt.zero_grad()

        step()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - t0)
        out[f"{name}_b{bsz}"] = best
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
