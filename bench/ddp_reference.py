"""Python side of bench/ddp.ts: one process of a DistributedDataParallel measurement (diffusers
0.20's UNet, the same config, batch, optimizer and updates as ours), started by bench/ddp.ts with
torchrun's variables. Rank 0 prints JSON: the median seconds per update.

usage: PYTHONPATH=<diffusers 0.20 src> RANK=.. WORLD_SIZE=.. MASTER_ADDR=.. MASTER_PORT=.. python3 bench/ddp_reference.py '{"case": "mid", "updates": 6, "device": "cpu", "bucket_mb": 25}'
"""
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from diffusers import UNet2DConditionModel

opts = json.loads(sys.argv[1])
torch.set_num_threads(1)
spec = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpointing_config.json")))[opts["case"]]
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
cuda = opts["device"] == "cuda"
device = torch.device(f"cuda:{os.environ['LOCAL_RANK']}") if cuda else torch.device("cpu")
if cuda:
    torch.cuda.set_device(device)

torch.manual_seed(0)
unet = UNet2DConditionModel.from_config({k: v for k, v in spec["config"].items() if not k.startswith("_")}).to(device)
unet.train()
model = unet
if world > 1:
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    model = torch.nn.parallel.DistributedDataParallel(unet, bucket_cap_mb=opts["bucket_mb"], device_ids=[device.index] if cuda else None)
opt = torch.optim.AdamW(unet.parameters(), lr=1e-5, fused=cuda)
b, s, ctx = spec["batch"], spec["latent"], spec["context"]
g = torch.Generator().manual_seed(1 + rank)
x = torch.randn(b, unet.config.in_channels, s, s, generator=g).to(device)
ehs = torch.randn(b, ctx, unet.config.cross_attention_dim, generator=g).to(device)
t = torch.tensor([100 + 300 * i for i in range(b)]).to(device)


def sync():
    if cuda:
        torch.cuda.synchronize(device)


times = []
for i in range(opts["updates"] + 1):
    sync()
    t0 = time.perf_counter()
    model(x, t, ehs).sample.pow(2).mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync()
    if i > 0:
        times.append(time.perf_counter() - t0)
times.sort()
if rank == 0:
    print(json.dumps({"update_s": times[len(times) // 2], "comm_s": None}))
if world > 1:
    dist.destroy_process_group()
