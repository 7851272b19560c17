"""Python side of bench/data.ts: the reference's train transform (PIL decode, convert('RGB'),
Resize(res, BILINEAR) -> CenterCrop(res) -> RandomHorizontalFlip -> ToTensor -> Normalize([0.5],[0.5]),
written out as torchvision runs it on PIL images) over the JPEG files of a folder; pairs/s on one
process and on a pool of all cores.

usage: python3 bench/data_reference.py FOLDER RESOLUTION PROCESSES
"""
import io
import json
import os
import random
import sys
import time
from multiprocessing import Pool

import numpy as np
import torch
from PIL import Image

folder, res, procs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
blobs = [open(f, "rb").read() for f in files]


def transform(data):
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = res, int(res * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    img = img.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - res) / 2.0)), int(round((nw - res) / 2.0))
    img = img.crop((left, top, left + res, top + res))
    if random.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    t = torch.from_numpy(np.array(img, np.uint8, copy=True)).permute(2, 0, 1).contiguous().float().div(255)
    return t.sub_(0.5).div_(0.5)


def pair(i):
    a = transform(blobs[(2 * i) % len(blobs)])
    b = transform(blobs[(2 * i + 1) % len(blobs)])
    return torch.cat([a, b]).shape[0]


torch.set_num_threads(1)
n = len(blobs) // 2
t0 = time.perf_counter()
for i in range(n):
    pair(i)
single = n / (time.perf_counter() - t0)
with Pool(procs) as pool:
    pool.map(pair, range(min(n, procs * 2)))
    t0 = time.perf_counter()
    pool.map(pair, range(n), chunksize=4)
    multi = n / (time.perf_counter() - t0)
print(json.dumps({"pairs_per_s_1": single, "pairs_per_s_all": multi, "pairs": n}))
