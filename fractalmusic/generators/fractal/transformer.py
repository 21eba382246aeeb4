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
        y = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=mask,
            dropout_p=self.attn_dropout if self.training else 0.0,
            is_causal=causal and mask is None,
        )
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
