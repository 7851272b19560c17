"""Python side of bench/scorers.ts: the reward models' scoring in images/s, with transformers
(CLIPModel, CLIPProcessor = CLIPImageProcessor + CLIPTokenizerFast: PickScore and the LAION
aesthetics scorer) and open_clip (HPSv2 / HPSv2.1 / CLIP ViT-H-14: its CLIP, its eval transform and
its tokenizer), on the same libtorch as ours.

usage:
  python3 bench/scorers_reference.py prepare WORKDIR FIXTURES_DIR
      writes, once, what both sides load: 8 photo-like 512x512 PNGs, the mid-size CLIPModel
      (ViT-B/32 shapes, random weights, seed 0) as a transformers folder, aesthetics heads for the
      tiny and mid projection widths, and open_clip CLIPs (tiny and ViT-B-32 shapes, random weights)
  python3 bench/scorers_reference.py run WORKDIR FIXTURES_DIR THREADS REPEATS MIN_SECONDS BATCHES
      prints one JSON line: images/s per scorer, config, batch size and mode ("forward": the model
      on a fixed preprocessed batch and fixed token ids; "e2e": from decoded 8-bit RGB images and
      prompts to scores, preprocessing and tokenising included), and the e2e scores of the largest
      batch (to check that both sides did the same work)

PYTHONPATH must hold transformers 4.57 (with huggingface_hub < 1.0 and tokenizers) and, for the
open_clip scorer, open_clip 3.3 (with torchvision's transforms); see docs/benchmarks.md.
"""
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
CFG = json.load(open(os.path.join(HERE, "scorers_config.json")))


def has_open_clip():
    try:
        import open_clip  # noqa: F401
        return True
    except Exception:
        return False


# ---------------------------------------------------------------- prepare

def prepare(work, fixtures):
    os.makedirs(work, exist_ok=True)
    img_dir = os.path.join(work, "images")
    if not os.path.exists(os.path.join(img_dir, "7.png")):
        os.makedirs(img_dir, exist_ok=True)
        rng = np.random.default_rng(0)
        size = CFG["image_size"]
        for i in range(8):
            # smooth structure (a small random image upsampled) plus fine noise: photo-like for PNG and resampling
            small = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
            base = np.asarray(small.resize((size, size), Image.BICUBIC), dtype=np.int16)
            noisy = np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy, "RGB").save(os.path.join(img_dir, f"{i}.png"))

    from transformers import CLIPConfig, CLIPModel
    clip_mid = os.path.join(work, "clip-mid")
    if not os.path.exists(os.path.join(clip_mid, "model.safetensors")):
        torch.manual_seed(0)
        c = CFG["clip"]["mid"]
        model = CLIPModel(CLIPConfig(text_config=c["text_config"], vision_config=c["vision_config"], projection_dim=c["projection_dim"])).eval()
        model.save_pretrained(clip_mid, safe_serialization=True)
        shutil.copy(os.path.join(fixtures, "tiny-clip", "preprocessor_config.json"), clip_mid)

    for name in ("tiny", "mid"):
        head = os.path.join(work, f"aesthetics-head-{name}.safetensors")
        if not os.path.exists(head):
            torch.manual_seed(1)
            save_file({k: v.contiguous() for k, v in aesthetics_mlp(projection_dim(name, fixtures, work)).state_dict().items()}, head)

    if has_open_clip():
        import open_clip
        for name, cfg in CFG["open_clip"].items():
            folder = os.path.join(work, f"open_clip-{name}")
            if os.path.exists(os.path.join(folder, "open_clip_model.safetensors")):
                continue
            os.makedirs(folder, exist_ok=True)
            torch.manual_seed(2)
            model = open_clip.model.CLIP(**cfg).eval()
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(folder, "open_clip_model.safetensors"))
            json.dump({"model_cfg": cfg}, open(os.path.join(folder, "open_clip_config.json"), "w"), indent=2)


def projection_dim(name, fixtures, work):
    folder = clip_folder(name, fixtures, work)
    return json.load(open(os.path.join(folder, "config.json")))["projection_dim"]


def clip_folder(name, fixtures, work):
    return os.path.join(fixtures, "tiny-clip") if name == "tiny" else os.path.join(work, "clip-mid")


def aesthetics_mlp(dim):
    """The reference's utils/aes_utils.py MLP (the LAION aesthetic predictor head), for an input width."""
    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(
                torch.nn.Linear(dim, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
                torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1))

        def forward(self, x):
            return self.layers(x)
    return MLP().eval()


# ---------------------------------------------------------------- run

def measure(fn, images, repeats, min_seconds):
    """images/s: two warm-up calls, then the best of `repeats` timed runs of n calls each (n such that a run lasts >= min_seconds)."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    n = max(1, math.ceil(min_seconds / max(once, 1e-9)))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return images / best


def run(work, fixtures, threads, repeats, min_seconds, batches):
    torch.set_num_threads(threads)
    import transformers
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizerFast

    prompts = CFG["prompts"]
    images = []
    for i in range(8):
        im = Image.open(os.path.join(work, "images", f"{i}.png")).convert("RGB")
        im.load()
        images.append(im)
    tokenizer = CLIPTokenizerFast.from_pretrained(os.path.join(fixtures, "tokenizer"))
    out = {"torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(), "results": {}, "scores": {}}

    def record(scorer, config, batch, mode, value):
        out["results"][f"{scorer}/{config}/{batch}/{mode}"] = value

    for config in ("tiny", "mid"):
        folder = clip_folder(config, fixtures, work)
        model = CLIPModel.from_pretrained(folder, attn_implementation="sdpa").eval()
        processor = CLIPProcessor(image_processor=CLIPImageProcessor.from_pretrained(folder), tokenizer=tokenizer)
        head = aesthetics_mlp(model.config.projection_dim)
        head.load_state_dict(load_file(os.path.join(work, f"aesthetics-head-{config}.safetensors")))

        for b in batches:
            imgs, ps = images[:b], prompts[:b]

            # PickScore (the reference's utils/pickscore_utils.py Selector, one prompt per image)
            def pick_forward(pix, tok):
                with torch.no_grad():
                    img = F.normalize(model.get_image_features(pixel_values=pix).float(), dim=-1)
                    txt = F.normalize(model.get_text_features(**tok).float(), dim=-1)
                    return (model.logit_scale.exp() * (img * txt).sum(-1)).tolist()

            def pick_e2e():
                pix = processor(images=imgs, return_tensors="pt")["pixel_values"]
                tok = processor(text=ps, padding=True, truncation=True, max_length=77, return_tensors="pt")
                return pick_forward(pix, tok)

            pix = processor(images=imgs, return_tensors="pt")["pixel_values"]
            tok = processor(text=ps, padding=True, truncation=True, max_length=77, return_tensors="pt")
            record("pickscore", config, b, "forward", measure(lambda: pick_forward(pix, tok), b, repeats, min_seconds))
            record("pickscore", config, b, "e2e", measure(pick_e2e, b, repeats, min_seconds))

            # aesthetics (utils/aes_utils.py): normalised image embeddings into the MLP head
            def aes_forward(pix):
                with torch.no_grad():
                    e = model.get_image_features(pixel_values=pix).float()
                    return head(e / torch.norm(e, dim=-1, keepdim=True)).flatten().tolist()

            def aes_e2e():
                return aes_forward(processor(images=imgs, return_tensors="pt")["pixel_values"])

            record("aesthetics", config, b, "forward", measure(lambda: aes_forward(pix), b, repeats, min_seconds))
            record("aesthetics", config, b, "e2e", measure(aes_e2e, b, repeats, min_seconds))
            if b == max(batches):
                out["scores"][f"pickscore/{config}"] = pick_e2e()
                out["scores"][f"aesthetics/{config}"] = aes_e2e()
        del model

    if has_open_clip():
        import open_clip
        out["open_clip"] = open_clip.__version__
        oc_tokenizer = open_clip.tokenizer.SimpleTokenizer()
        for config in ("tiny", "mid"):
            folder = os.path.join(work, f"open_clip-{config}")
            cfg = json.load(open(os.path.join(folder, "open_clip_config.json")))["model_cfg"]
            model = open_clip.model.CLIP(**cfg).eval()
            model.load_state_dict(load_file(os.path.join(folder, "open_clip_model.safetensors")))
            preprocess = open_clip.transform.image_transform(model.visual.image_size, is_train=False)
            for b in batches:
                imgs, ps = images[:b], prompts[:b]

                # HPSv2 / CLIP score: cosine of the normalised features, per (image, prompt)
                def oc_forward(pix, tokens):
                    with torch.no_grad():
                        img = model.encode_image(pix, normalize=True).float()
                        txt = model.encode_text(tokens, normalize=True).float()
                        return (img * txt).sum(-1).tolist()

                def oc_e2e():
                    return oc_forward(torch.stack([preprocess(im) for im in imgs]), oc_tokenizer(ps))

                pix = torch.stack([preprocess(im) for im in imgs])
                tokens = oc_tokenizer(ps)
                record("open_clip", config, b, "forward", measure(lambda: oc_forward(pix, tokens), b, repeats, min_seconds))
                record("open_clip", config, b, "e2e", measure(oc_e2e, b, repeats, min_seconds))
                if b == max(batches):
                    out["scores"][f"open_clip/{config}"] = oc_e2e()
            del model
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], sys.argv[3])
    else:
        work, fixtures, threads, repeats, min_seconds, batches = sys.argv[2:8]
        run(work, fixtures, int(threads), int(repeats), float(min_seconds), [int(b) for b in batches.split(",")])
