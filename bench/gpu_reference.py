"""Python side of bench/gpu.ts: the same stages with diffusers 0.20 and train.py's step logic on the
same device, in the same run. Prints one JSON list of rows (the columns bench/gpu.ts uses).

usage: PYTHONPATH=<diffusers 0.20 src> python3 bench/gpu_reference.py STAGE 'JSON settings'
  a, b: UNet fwd+bwd and a DPO step as train.py runs it under accelerate: the trained UNet's forward
        under autocast with its output cast to float32, the VAE and the reference UNet in the weight
        dtype, the DPO loss, backward (fp16: GradScaler), clip_grad_norm_, AdamW (b: transformers'
        Adafactor and gradient checkpointing, as train.py does for SDXL)
  c:    StableDiffusionPipeline.__call__'s loop with precomputed prompt embeddings, PNDM, CFG
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, PNDMScheduler, UNet2DConditionModel
from diffusers.utils import randn_tensor

stage, s = sys.argv[1], json.loads(sys.argv[2])
device = s["device"]
deadline = time.perf_counter() + s["budget"]
cfg = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_config.json")))
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def config(part):
    if s["model"] in cfg["models"]:
        return {k: v for k, v in cfg["models"][s["model"]][part].items() if not k.startswith("_")}
    return json.load(open(os.path.join(s["fixtures"], s["model"], part, "config.json" if part != "scheduler" else "scheduler_config.json")))


def sync():
    if device == "cuda":
        torch.cuda.synchronize()


def peak_mb():
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def reset_peak():
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def best(fn):
    if time.perf_counter() > deadline:
        return None
    fn()
    sync()
    t = float("inf")
    for _ in range(s["repeats"]):
        if time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        fn()
        sync()
        t = min(t, time.perf_counter() - t0)
    return t


def unet_from(dtype=torch.float32):
    torch.manual_seed(0)
    return UNet2DConditionModel.from_config(config("unet")).to(device=device, dtype=dtype)


rows = []
if stage in ("a", "b"):
    unet = unet_from().train()
    if s.get("gradient_checkpointing"):
        unet.enable_gradient_checkpointing()
    if s.get("optimizer") == "adafactor":
        from transformers.optimization import Adafactor
        opt = Adafactor(unet.parameters(), lr=1e-6, clip_threshold=1.0, scale_parameter=False, relative_step=False)
    else:
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-6)
    sched = DDPMScheduler.from_config(config("scheduler"))
    uc = unet.config
    sdxl = uc.addition_embed_type == "text_time"
    for precision in s["precision"]:
        dtype = DTYPES[precision]
        ref = unet_from(dtype).requires_grad_(False).eval()
        vae = AutoencoderKL.from_config(config("vae")).to(device=device, dtype=dtype).requires_grad_(False)
        scaler = torch.amp.GradScaler(device) if precision == "fp16" else None
        for pairs in s["pairs"]:
            g = torch.Generator().manual_seed(0)
            r = s["resolution"]
            pixels = (torch.rand(pairs, 6, r, r, generator=g) * 2 - 1).to(device)
            ehs = torch.randn(pairs, 77, uc.cross_attention_dim, generator=g).to(device, dtype)
            pooled = torch.randn(pairs, uc.projection_class_embeddings_input_dim - 6 * uc.addition_time_embed_dim, generator=g).to(device, dtype) if sdxl else None
            f = 2 ** (len(vae.config.block_out_channels) - 1)
            latents0 = torch.randn(2 * pairs, 4, r // f, r // f, generator=g).to(device)
            t0 = torch.tensor([(i * 137) % 1000 for i in range(2 * pairs)], device=device)
            time_ids = torch.tensor([[r, r, 0, 0, r, r]] * 2 * pairs, dtype=dtype, device=device)
            added = {"text_embeds": pooled.repeat(2, 1), "time_ids": time_ids} if sdxl else None

            def unet_call(x, t):
                with torch.autocast(device, dtype=dtype, enabled=precision != "fp32"):
                    out = unet(x, t, ehs.repeat(2, 1, 1), added_cond_kwargs=added).sample
                return out.float()  # accelerate's convert_outputs_to_fp32

            def backward(loss):
                (scaler.scale(loss) if scaler else loss).backward()

            def fwd_bwd():
                backward(unet_call(latents0, t0).pow(2).mean())
                opt.zero_grad(set_to_none=True)

            def dpo_step():
                feed = torch.cat(pixels.chunk(2, dim=1))
                with torch.no_grad():
                    latents = vae.encode(feed.to(dtype)).latent_dist.sample() * vae.config.scaling_factor
                noise = torch.randn_like(latents)
                t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), device=device)
                t = t.chunk(2)[0].repeat(2)
                noise = noise.chunk(2)[0].repeat(2, 1, 1, 1)
                noisy = sched.add_noise(latents, noise, t)
                pred = unet_call(noisy, t)
                ml = (pred - noise).pow(2).mean(dim=[1, 2, 3])
                mw, mlo = ml.chunk(2)
                with torch.no_grad():
                    rp = ref(noisy, t, ehs.repeat(2, 1, 1), added_cond_kwargs=added).sample.detach()
                    rl = (rp - noise).pow(2).mean(dim=[1, 2, 3])
                    rw, rlo = rl.chunk(2)
                inside = -0.5 * 5000 * ((mw - mlo) - (rw - rlo))
                backward(-F.logsigmoid(inside).mean())
                if scaler:
                    scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
                if scaler:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                opt.zero_grad(set_to_none=True)

            reset_peak()
            tu = best(fwd_bwd)
            unet_peak = peak_mb()
            reset_peak()
            ts = best(dpo_step)
            rows.append({"side": "diffusers 0.20", "precision": precision, "pairs": pairs, "unet_fwd_bwd_s": tu, "unet_peak_mb": unet_peak,
                         "dpo_step_s": ts, "dpo_pairs_per_s": None if ts is None else pairs / ts, "dpo_peak_mb": peak_mb()})
        del ref, vae
elif stage == "c":
    dtype = torch.float16 if device == "cuda" else torch.float32
    unet = unet_from(dtype).eval()
    vae = AutoencoderKL.from_config(config("vae")).to(device)
    scheduler = PNDMScheduler.from_config(config("scheduler"))
    width = unet.config.cross_attention_dim
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(1, 77, width, generator=g).to(device, dtype)
    uncond = torch.randn(1, 77, width, generator=g).to(device, dtype)
    f = 2 ** (len(vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def image():
        embeds = torch.cat([uncond, cond])
        scheduler.set_timesteps(s["steps"], device=device)
        latents = randn_tensor((1, 4, s["resolution"] // f, s["resolution"] // f), generator=torch.Generator().manual_seed(0), device=torch.device(device), dtype=dtype)
        latents = latents * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            u, c = unet(x, t, encoder_hidden_states=embeds, return_dict=False)[0].chunk(2)
            latents = scheduler.step(u + s["guidance"] * (c - u), t, latents, return_dict=False)[0]
        return vae.decode(latents.float() / vae.config.scaling_factor, return_dict=False)[0].cpu()

    reset_peak()
    rows.append({"side": "diffusers 0.20", "dtype": str(dtype).replace("torch.", ""), "steps": s["steps"], "resolution": s["resolution"],
                 "s_per_image": best(image), "peak_mb": peak_mb()})
print(json.dumps(rows))
