"""Python side of bench/sampling.ts: seconds per image of diffusers 0.20's StableDiffusionPipeline
denoising loop and decode (SD 1.5 architecture, PNDM, guidance 7.5, random weights, precomputed
prompt embeddings) on the same libtorch as ours.

usage: PYTHONPATH=<diffusers 0.20 src> python3 bench/sampling.py prepare DIR ARCH_DIR
       PYTHONPATH=<diffusers 0.20 src> python3 bench/sampling.py time DIR THREADS SIZE STEPS REPEATS
`prepare` writes random-weight unet/, vae/ and scheduler/ (seed 0) that both sides then load.
"""
import json
import os
import sys
import time

import torch
import diffusers
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import randn_tensor


def config(arch, name):
    c = json.load(open(os.path.join(arch, f"sd15-{name}.config.json")))
    return {k: v for k, v in c.items() if not k.startswith("_")}


if sys.argv[1] == "prepare":
    out, arch = sys.argv[2], sys.argv[3]
    torch.manual_seed(0)
    UNet2DConditionModel.from_config(config(arch, "unet")).save_pretrained(os.path.join(out, "unet"), safe_serialization=True)
    AutoencoderKL.from_config(config(arch, "vae")).save_pretrained(os.path.join(out, "vae"), safe_serialization=True)
    PNDMScheduler.from_config(config(arch, "scheduler")).save_pretrained(os.path.join(out, "scheduler"))
    sys.exit(0)

out, threads, size, steps, repeats = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
unet = UNet2DConditionModel.from_pretrained(os.path.join(out, "unet"))
vae = AutoencoderKL.from_pretrained(os.path.join(out, "vae"))
scheduler = PNDMScheduler.from_pretrained(os.path.join(out, "scheduler"))
processor = VaeImageProcessor(vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1))
g = torch.Generator().manual_seed(0)
cond = torch.randn(1, 77, 768, generator=g)
uncond = torch.randn(1, 77, 768, generator=g)


@torch.no_grad()
def image(n):
    # StableDiffusionPipeline.__call__ (diffusers 0.20) from prepare_latents on, with precomputed
    # prompt embeddings: the pipeline class itself cannot be built without transformers.
    embeds = torch.cat([uncond, cond])
    scheduler.set_timesteps(n)
    latents = randn_tensor((1, 4, size // processor.config.vae_scale_factor, size // processor.config.vae_scale_factor),
                           generator=torch.Generator().manual_seed(0), dtype=torch.float32) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        noise_uncond, noise_text = unet(x, t, encoder_hidden_states=embeds, return_dict=False)[0].chunk(2)
        latents = scheduler.step(noise_uncond + 7.5 * (noise_text - noise_uncond), t, latents, return_dict=False)[0]
    decoded = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    return processor.postprocess(decoded, output_type="np")


image(2)  # warm-up
best = float("inf")
for _ in range(repeats):
    t0 = time.perf_counter()
    image(steps)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"diffusers": diffusers.__version__, "torch": torch.__version__, "seconds": best}))
