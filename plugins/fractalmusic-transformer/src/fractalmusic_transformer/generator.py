"""`transformer`: a decoder-only transformer language model over any token representation.

embedding -> dropout -> `num_layers` pre-norm blocks (causal self-attention with rotary positions, GELU MLP) ->
LayerNorm -> output head tied to the embedding (`--no-tie-weights` for a separate one).

* Positions are rotary (RoPE, Su et al. 2021), applied to queries and keys at their absolute positions, so an
  attention score depends only on the distance between two tokens. That is what lets sampling run past the
  training length: in every layer a position attends to at most the last `context_length` positions (a sliding
  KV window; stacked layers reach further back, as in any sliding-window transformer), so it only ever sees
  distances it saw in training (when `context_length` <= the training crop + 1).
* Attention is `torch.nn.functional.scaled_dot_product_attention` (its causal kernel in training; a banded mask
  only where a window or a KV cache needs one).
* Sampling carries a KV cache (`init_state` / `step` of `fractalmusic.generators.token.TokenGenerator`, which
  provides `loss`, `nll` and `sample`): a primer is run through once, then one position per generated token;
  keys and values are written into preallocated buffers (no copy of the cache, no allocation per token).
* `set_grad_checkpointing(True)` (`fmusic train --grad-checkpoint`) recomputes each block in the backward pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from fractalmusic.plugin import ConfigError, RepresentationSpec, TokenGenerator, option


@dataclass
class TransformerConfig:
    """Hyper-parameters of the transformer generator (each field is a `fmusic train` option)."""

    num_layers: int = option(4, help="transformer blocks")
    d_model: int = option(256, help="width of the token embeddings and the residual stream")
    num_heads: int = option(4, help="attention heads (d_model must be a multiple, with an even quotient)")
    ff_mult: int = option(4, help="MLP hidden width = ff_mult x d_model")
    dropout: float = option(0.1, help="on embeddings, attention weights and residual branches")
    context_length: int = option(512, help="positions each layer attends to (the sliding window past it)")
    rope_base: float = option(10000.0, help="rotary position base (theta)")
    tie_weights: bool = option(True, help="output head shares the embedding matrix")

    def __post_init__(self):
        for name in ("num_layers", "d_model", "num_heads", "ff_mult", "context_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number >= 1, not {value!r}")
        if self.d_model % self.num_heads:
            raise ConfigError(f"--d-model ({self.d_model}) must be a multiple of --num-heads ({self.num_heads})")
        if (self.d_model // self.num_heads) % 2:
            raise ConfigError(
                f"rotary positions need an even head width; d_model / num_heads = {self.d_model // self.num_heads}"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), not {self.dropout}")
        if not float(self.rope_base) > 1.0:
            raise ConfigError(f"--rope-base must be above 1, not {self.rope_base}")


# ------------------------------------------------------------------------------------------- rotary positions
def rotary_tables(positions: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype):
    """cos and sin tables ``[T, head_dim / 2]`` for integer `positions` ``[T]``."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.to(torch.float32)[:, None] * inv[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the last axis of ``x [B, H, T, D]`` by the position angles."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def band_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int) -> torch.Tensor:
    """Boolean ``[Tq, Tk]``: True where a query may attend to a key (not in the future, at most window-1 back)."""
    dist = q_pos[:, None] - k_pos[None, :]
    return (dist >= 0) & (dist < window)


@dataclass
class KVCache:
    """Sampling state: per layer a preallocated key and a value buffer ``[B, H, capacity, head_dim]`` whose first
    `length` slots hold the keys and values of the latest positions (at least the last `context_length - 1`), and
    the position of the next token. New keys are written in place; when a buffer is full its last
    `context_length - 1` entries move to the front (once every `capacity - context_length + 1` tokens), so a
    sampling step copies no cache and allocates no memory."""

    keys: list[torch.Tensor | None]
    values: list[torch.Tensor | None]
    pos: int = 0
    length: int = 0
    capacity: int = 0

    def reserve(self, T: int, keep: int, slack: int = 256) -> None:
        """Make room for T new entries, keeping at least the last `keep` valid ones."""
        if self.length + T <= self.capacity:
            return
        kept = min(self.length, keep)
        need = kept + T
        grow = need > self.capacity
        if grow:
            self.capacity = keep + max(T, slack)
        for store in (self.keys, self.values):
            for i, buf in enumerate(store):
                if buf is None:
                    continue
                last = buf[:, :, self.length - kept : self.length]
                if grow:
                    new = buf.new_empty(buf.shape[0], buf.shape[1], self.capacity, buf.shape[3])
                    new[:, :, :kept] = last
                    store[i] = new
                else:
                    buf[:, :, :kept] = last.clone()
        self.length = kept

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, lo: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys and values at `length` and return the visible ones (slots lo .. length + T)."""
        if self.keys[layer] is None:
            B, H, _, D = k.shape
            self.keys[layer] = k.new_empty(B, H, self.capacity, D)
            self.values[layer] = v.new_empty(B, H, self.capacity, D)
        T = k.shape[2]
        kb, vb = self.keys[layer], self.values[layer]
        kb[:, :, self.length : self.length + T] = k
        vb[:, :, self.length : self.length + T] = v
        return kb[:, :, lo : self.length + T], vb[:, :, lo : self.length + T]


# ------------------------------------------------------------------------------------------- the network
class Attention(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.num_heads = c.num_heads
        self.head_dim = c.d_model // c.num_heads
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model, bias=False)
        self.out = nn.Linear(c.d_model, c.d_model, bias=False)
        self.dropout = float(c.dropout)

    def forward(self, x, cos, sin, mask, cache: KVCache | None = None, layer: int = 0, lo: int = 0):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)  # under autocast q is bf16/fp16 while the tables are not
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:  # keys and values go into the cache; attend over its visible slots
            k, v = cache.write(layer, k, v, lo)
        drop = self.dropout if self.training else 0.0
        if isinstance(mask, str):  # "causal": the fused causal kernel, queries and keys aligned
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:  # None (one query that may see every key) or a boolean [Tq, Tk] mask
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.d_model)
        self.attn = Attention(c)
        self.norm2 = nn.LayerNorm(c.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(c.d_model, c.ff_mult * c.d_model, bias=False),
            nn.GELU(),
            nn.Linear(c.ff_mult * c.d_model, c.d_model, bias=False),
        )
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, cos, sin, mask, cache: KVCache | None = None, layer: int = 0, lo: int = 0):
        x = x + self.drop(self.attn(self.norm1(x), cos, sin, mask, cache, layer, lo))
        return x + self.drop(self.mlp(self.norm2(x)))


class TransformerGenerator(TokenGenerator):
    """Decoder-only transformer with rotary positions and a sliding KV window; see the module docstring."""

    name: ClassVar[str] = "transformer"
    Config: ClassVar[type] = TransformerConfig
    plugin_api_version: ClassVar[int] = 2
    # the usual setting for a small pre-norm transformer (not tuned here); a short warm-up, because a CPU budget buys
    # only a few hundred steps (docs/BENCHMARKS.md)
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "warmup_steps": 50}
    # a tiny configuration for fractalmusic's own contract run over every installed plugin (tests/test_contracts.py)
    test_config: ClassVar[dict[str, Any]] = {"num_layers": 1, "d_model": 16, "num_heads": 2, "context_length": 32}

    def __init__(self, config: TransformerConfig, spec: RepresentationSpec):
        super().__init__(config, spec)
        c = config
        V = int(spec.vocab_size)
        self.max_context = int(c.context_length)  # the base feeds longer primers in chunks of this size
        self.embedding = nn.Embedding(V, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.num_layers))
        self.norm = nn.LayerNorm(c.d_model)
        self.head = None if c.tie_weights else nn.Linear(c.d_model, V, bias=False)
        self.out_bias = nn.Parameter(torch.zeros(V))
        self._init_weights()

    def _init_weights(self) -> None:
        std = 0.02
        residual_std = std / math.sqrt(2 * self.config.num_layers)
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue
            is_residual = name.endswith("attn.out.weight") or name.endswith("mlp.2.weight")
            nn.init.normal_(p, mean=0.0, std=residual_std if is_residual else std)

    # ------------------------------------------------------------- pieces
    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``[..., d_model]`` -> logits ``[..., V]``."""
        h = self.norm(h)
        weight = self.embedding.weight if self.head is None else self.head.weight
        return F.linear(h, weight, self.out_bias)

    def _tables(self, start: int, T: int, like: torch.Tensor):
        positions = torch.arange(start, start + T, device=like.device)
        return rotary_tables(positions, self.config.d_model // self.config.num_heads, self.config.rope_base, like.dtype)

    def hidden(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Hidden states ``[B, T, d_model]`` of `tokens` following `cache` (None: a fresh sequence, nothing kept).

        With a cache the new keys and values are written into it; each query sees at most the `context_length - 1`
        positions before it."""
        B, T = tokens.shape
        W = int(self.config.context_length)
        keep = W - 1
        x = self.drop(self.embedding(tokens))
        start = cache.pos if cache is not None else 0
        cos, sin = self._tables(start, T, x)
        past, lo = 0, 0
        if cache is not None:
            cache.reserve(T, keep)
            lo = max(0, cache.length - keep)  # the oldest cached slot the first new token may see
            past = cache.length - lo
        if past == 0 and T <= W:
            mask: Any = "causal" if T > 1 else None
        elif T == 1:
            mask = None  # one query; at most W - 1 cached keys, all inside its window
        else:
            q_pos = torch.arange(start, start + T, device=tokens.device)
            k_pos = torch.arange(start - past, start + T, device=tokens.device)
            mask = band_mask(q_pos, k_pos, W)
        use_ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled() and cache is None
        for i, block in enumerate(self.blocks):
            if use_ckpt:
                x = checkpoint(block, x, cos, sin, mask, use_reentrant=False)
            else:
                x = block(x, cos, sin, mask, cache, i, lo)
        if cache is not None:
            cache.length += T
            cache.pos = start + T
        return x

    # ------------------------------------------------------------- TokenGenerator hooks
    def init_state(self, batch_size: int, device) -> KVCache:
        n = len(self.blocks)
        return KVCache(keys=[None] * n, values=[None] * n, pos=0)

    def step(self, tokens: torch.Tensor, state: KVCache | None) -> tuple[torch.Tensor, KVCache | None]:
        return self.logits(self.hidden(tokens, state)), state

    def predicted_logits(self, inputs: torch.Tensor, keep: torch.Tensor, teacher_forced: bool) -> torch.Tensor:
        """Training and nll: no cache, and the output head only where a token is predicted."""
        return self.logits(self.hidden(inputs, None)[keep])
