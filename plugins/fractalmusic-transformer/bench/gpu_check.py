"""GPU check of the transformer generator: KV cache and sliding window agree with one pass on CUDA (fp32, bf16),
bf16 training steps, gradient checkpointing, and sampling speed past the context. Prints one JSON line per check.

    PYTHONPATH=.:plugins/fractalmusic-transformer/src python plugins/fractalmusic-transformer/bench/gpu_check.py
"""
from __future__ import annotations

import json
import time

import torch

from fractalmusic.representations.base import RepresentationSpec
from fractalmusic_transformer import TransformerConfig, TransformerGenerator


def say(**kw):
    print(json.dumps(kw), flush=True)


def main() -> None:
    dev = torch.device("cuda")
    spec = RepresentationSpec(kind="tokens", vocab_size=96, pad_id=0, bos_id=1, eos_id=2)
    say(device=torch.cuda.get_device_name(0), torch=torch.__version__)
    for window in (512, 64):
        torch.manual_seed(0)
        gen = TransformerGenerator(TransformerConfig(context_length=window, dropout=0.0), spec).to(dev).eval()
        x = torch.randint(3, 96, (4, 300), device=dev)
        for dtype in (torch.float32, torch.bfloat16):
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                full, _ = gen.step(x, None)
                st = gen.init_state(4, dev)
                a, st = gen.step(x[:, :100], st)
                steps = [gen.step(x[:, t : t + 1], st)[0] for t in range(100, 300)]
                inc = torch.cat([a] + steps, dim=1)
            err = (full.float() - inc.float()).abs().max().item()
            say(check="kv_cache_vs_one_pass", window=window, dtype=str(dtype), max_abs_diff=err,
                ok=err < (1e-3 if dtype == torch.float32 else 0.25))
    # bf16 training on a repeating pattern: the loss must fall; checkpointing gives the same gradients
    torch.manual_seed(0)
    gen = TransformerGenerator(TransformerConfig(dropout=0.1), spec).to(dev).train()
    opt = torch.optim.AdamW(gen.parameters(), lr=1e-3)
    pattern = torch.arange(3, 35, device=dev).repeat(9)[:257]
    batch = {"tokens": pattern.expand(32, -1).contiguous(), "mask": torch.ones(32, 257, dtype=torch.bool, device=dev)}
    losses = []
    t0 = time.perf_counter()
    for _ in range(60):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = gen.loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    torch.cuda.synchronize()
    say(check="bf16_training", first=losses[0], last=losses[-1], ok=losses[-1] < 0.5 * losses[0],
        steps_per_s=60 / (time.perf_counter() - t0))
    grads = []
    for on in (False, True):
        gen.zero_grad()
        gen.set_grad_checkpointing(on)
        torch.manual_seed(3)
        gen.loss(batch)["loss"].backward()
        grads.append(torch.cat([p.grad.flatten() for p in gen.parameters()]))
    diff = (grads[0] - grads[1]).abs().max().item()
    say(check="grad_checkpointing", max_abs_diff=diff, ok=diff < 1e-4)
    # sampling: 64 rows x 2048 tokens with a 512 window (4x the training context of the folk runs)
    gen.eval()
    for n, length in ((1, 2048), (64, 2048)):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = gen.sample(n, length, seed=0)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        say(check="sampling", n=n, length=length, shape=list(out.shape), seconds=dt,
            tokens_per_s=n * (out.shape[1] - 1) / dt)


if __name__ == "__main__":
    main()
