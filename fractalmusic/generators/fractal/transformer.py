"""The transformer used at every level: pre-norm blocks, an optional key-value cache, gradient checkpointing.

Attention masks are boolean and broadcast to ``[N, heads, queries, keys]``; True means "may attend".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class KVCache:
    """Keys and values of one block for the tokens fed so far (preallocated to `capacity` tokens)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, h, length, d = k.shape
        if self.k is None:
            self.k = k.new_empty(n, h, self.capacity, d)
            self.v = v.new_empty(n, h, self.capacity, d)
        end = self.length + length
        if end > self.capacity:
            raise RuntimeError(f"KV cache overflow: {end} > {self.capacity}")
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


# CUDA's memory-efficient attention kernel refuses more than 65,535 sequences in one call ("Efficient attention
# cannot produce valid seed and offset outputs when the batch size exceeds (65535)"). The finer fractal levels run
# one short sequence per patch, so a batch of 32 rolls at crop 128 already has 32 x 8 x 8 x 16 of them at level 2.
MAX_ATTENTION_BATCH = 32768


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout: float,
               causal: bool) -> torch.Tensor:
    """`scaled_dot_product_attention`, called in slices of at most MAX_ATTENTION_BATCH sequences."""
    n = q.shape[0]
    if n <= MAX_ATTENTION_BATCH:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
    parts = []
    for start in range(0, n, MAX_ATTENTION_BATCH):
        end = min(start + MAX_ATTENTION_BATCH, n)
        part_mask = mask if mask is None or mask.dim() < 4 or mask.shape[0] == 1 else mask[start:end]
        parts.append(F.scaled_dot_product_attention(q[start:end], k[start:end], v[start:end], attn_mask=part_mask,
                                                    dropout_p=dropout, is_causal=causal))
    return torch.cat(parts)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = dropout
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None,
                causal: bool = False) -> torch.Tensor:
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (indexing would make backward zero-fill three full-size gradients)
        if cache is not None:
            k, v = cache.append(k, v)
        y = _attention(q, k, v, mask, self.attn_dropout if self.training else 0.0, causal and mask is None)
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(n, length, dim)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None,
                causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask, cache, causal)
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.norm2(x)))))


class Transformer(nn.Module):
    """`depth` blocks and a final LayerNorm. With `grad_checkpointing`, each block is recomputed in backward."""

    def __init__(self, dim: int, depth: int, heads: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.grad_checkpointing = False

    def new_cache(self, capacity: int) -> list[KVCache]:
        return [KVCache(capacity) for _ in self.blocks]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, caches: list[KVCache] | None = None,
                causal: bool = False) -> torch.Tensor:
        use_ckpt = self.grad_checkpointing and caches is None and torch.is_grad_enabled() and self.training
        for i, blk in enumerate(self.blocks):
            if use_ckpt:
                x = checkpoint(blk, x, mask, None, causal, use_reentrant=False)
            else:
                x = blk(x, mask, caches[i] if caches is not None else None, causal)
        return self.norm(x)
