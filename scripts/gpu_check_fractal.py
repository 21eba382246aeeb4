"""GPU check of the fractal generators: the default MAR and mar,ar,ar at batch 32 x crop 128, three bf16 and three
fp16 (GradScaler) training steps each, peak memory, and sampling 16 rolls. On a CUDA machine:

    python scripts/gpu_check_fractal.py
"""
import time

import torch

from fractalmusic.generators.fractal import FractalConfig, MARGenerator
from fractalmusic.representations.base import RepresentationSpec

spec = RepresentationSpec(kind="grid", vocab_size=3)
dev = torch.device("cuda")


def batch(b, w):
    g = torch.zeros(b, 128, w, dtype=torch.long)
    for i in range(b):
        for t in range(0, w, 4):
            p = 50 + (i * 7 + t) % 30
            g[i, p, t] = 2
            g[i, p, t + 1:t + 4] = 1
    return {"grid": g.to(dev), "mask": torch.ones(b, w, dtype=torch.bool, device=dev)}


for kw in ({}, {"generator_types": ("mar", "ar", "ar")}):
    for prec in ("bf16", "fp16"):
        torch.manual_seed(0)
        m = MARGenerator(FractalConfig(**kw), spec).to(dev)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=prec == "fp16")
        dtype = torch.bfloat16 if prec == "bf16" else torch.float16
        torch.cuda.reset_peak_memory_stats()
        t = time.time()
        for step in range(3):
            with torch.autocast("cuda", dtype=dtype):
                out = m.loss(batch(32, 128))
            opt.zero_grad()
            scaler.scale(out["loss"]).backward()
            scaler.step(opt)
            scaler.update()
        torch.cuda.synchronize()
        print(kw or "mar", prec, "loss", float(out["loss"].detach()), "s/step", round((time.time() - t) / 3, 3),
              "peak GB", round(torch.cuda.max_memory_allocated() / 1e9, 2),
              "scale", scaler.get_scale() if prec == "fp16" else "-")
        m.eval()
        t = time.time()
        s = m.sample(16, 128, seed=1)
        torch.cuda.synchronize()
        print("  sample 16x128", s.shape, round(time.time() - t, 2), "s")
