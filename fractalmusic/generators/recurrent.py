"""The recurrent family: rnn, lstm and gru language models over token sequences.

embedding -> dropout -> nn.RNN / nn.LSTM / nn.GRU (num_layers, dropout between layers) -> dropout -> output head.
The three generators share everything but the cell. With `tie_weights` the output head reuses the embedding matrix;
when `embedding_dim != hidden_size` a linear projection hidden -> embedding_dim sits in front of it.

Training predicts ``tokens[:, 1:]`` from ``tokens[:, :-1]``. `teacher_forcing_ratio` < 1 turns on scheduled
sampling: during training each input position after the first is replaced, with probability 1 - ratio, by a token
drawn from the model's own prediction for that position (a step-by-step loop, slower than the fused one).

Sampling runs all n sequences as one batch and carries the recurrent state: a primer is run through once, then one
time step per generated token; nothing is ever re-fed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from fractalmusic import sampling
from fractalmusic.errors import ConfigError
from fractalmusic.generators.base import Generator
from fractalmusic.representations.base import RepresentationSpec


@dataclass
class RecurrentConfig:
    """Hyper-parameters of the rnn, lstm and gru generators (each field is a `fmusic train` option)."""

    embedding_dim: int = 128  # token embedding width
    hidden_size: int = 512  # recurrent state width per layer
    num_layers: int = 1  # stacked recurrent layers
    dropout: float = 0.25  # on embeddings, between layers and before the output head
    tie_weights: bool = False  # output head shares the embedding matrix (projection added if sizes differ)
    teacher_forcing_ratio: float = 1.0  # 1 = teacher forcing; < 1 = scheduled sampling during training

    def __post_init__(self):
        for name in ("embedding_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number >= 1, not {value!r}")
        if not (0.0 <= float(self.dropout) < 1.0):
            raise ConfigError(f"--dropout must be in [0, 1), not {self.dropout}")
        if not (0.0 <= float(self.teacher_forcing_ratio) <= 1.0):
            raise ConfigError(f"--teacher-forcing-ratio must be in [0, 1], not {self.teacher_forcing_ratio}")


_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentGenerator(Generator):
    """Common code of the recurrent generators; subclasses only name their cell."""

    accepts: ClassVar[tuple[str, ...]] = ("tokens",)
    Config: ClassVar[type] = RecurrentConfig
    # measured on the folk corpus: Adam at 3e-3 reaches a lower held-out loss in a few CPU minutes than 1e-3
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 3e-3}
    cell: ClassVar[str] = ""

    def __init__(self, config: RecurrentConfig, spec: RepresentationSpec):
        super().__init__(config, spec)
        if spec.vocab_size < 2:
            raise ConfigError(f"generator {self.name!r} needs a vocabulary of at least 2 tokens")
        c = config
        V = int(spec.vocab_size)
        self.embedding = nn.Embedding(V, c.embedding_dim)
        self.drop = nn.Dropout(c.dropout)
        self.rnn = _CELLS[self.cell](
            input_size=c.embedding_dim,
            hidden_size=c.hidden_size,
            num_layers=c.num_layers,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
            batch_first=True,
        )
        if c.tie_weights:
            self.proj = nn.Linear(c.hidden_size, c.embedding_dim) if c.hidden_size != c.embedding_dim else None
            self.out_bias = nn.Parameter(torch.zeros(V))
            self.head = None
        else:
            self.proj = None
            self.out_bias = None
            self.head = nn.Linear(c.hidden_size, V)
        self._fill_id = spec.pad_id if spec.pad_id is not None and 0 <= spec.pad_id < V else 0

    # ------------------------------------------------------------- pieces of the network
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output head: recurrent outputs [..., hidden_size] -> logits [..., vocab_size]."""
        h = self.drop(hidden)
        if self.head is not None:
            return self.head(h)
        if self.proj is not None:
            h = self.proj(h)
        return F.linear(h, self.embedding.weight, self.out_bias)

    def _run_rnn(self, x: torch.Tensor, state=None):
        use_ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        if not use_ckpt:
            return self.rnn(x, state)
        if state is None:
            return checkpoint(self.rnn, x, use_reentrant=False)
        return checkpoint(self.rnn, x, state, use_reentrant=False)

    def forward(self, tokens: torch.Tensor, state=None):
        """tokens [B, T] -> (logits [B, T, V], state). `state` carries over between calls."""
        out, state = self._run_rnn(self.drop(self.embedding(tokens)), state)
        return self.logits(out), state

    # ------------------------------------------------------------- training
    def _inputs_targets(self, batch: dict[str, torch.Tensor]):
        tokens = batch["tokens"]
        if tokens.dim() != 2:
            raise ConfigError(f"generator {self.name!r} expects token batches [B, L], got shape {tuple(tokens.shape)}")
        mask = batch.get("mask")
        if mask is None:
            mask = torch.ones_like(tokens, dtype=torch.bool)
        mask = mask.to(torch.bool)
        # positions outside the mask may hold anything: give the embedding a valid id there
        inputs = torch.where(mask[:, :-1], tokens[:, :-1], torch.full_like(tokens[:, :-1], self._fill_id))
        return inputs, tokens[:, 1:], mask[:, 1:]

    def _hidden_teacher_forced(self, inputs: torch.Tensor) -> torch.Tensor:
        out, _ = self._run_rnn(self.drop(self.embedding(inputs)))
        return out

    def _hidden_scheduled(self, inputs: torch.Tensor) -> torch.Tensor:
        """Step by step; each input after the first is, with probability 1 - ratio, the model's own draw."""
        ratio = float(self.config.teacher_forcing_ratio)
        B, T = inputs.shape
        outs = []
        state = None
        x = inputs[:, :1]
        for t in range(T):
            if t > 0:
                with torch.no_grad():
                    own = sampling.draw(self.logits(outs[-1]).detach().squeeze(1))
                replace = torch.rand(B, device=inputs.device) >= ratio
                x = torch.where(replace, own, inputs[:, t]).unsqueeze(1)
            out, state = self._run_rnn(self.drop(self.embedding(x)), state)
            outs.append(out)
        return torch.cat(outs, dim=1)

    def _scores(self, batch: dict[str, torch.Tensor], scheduled: bool):
        inputs, targets, tmask = self._inputs_targets(batch)
        if scheduled and self.training and self.config.teacher_forcing_ratio < 1.0:
            hidden = self._hidden_scheduled(inputs)
        else:
            hidden = self._hidden_teacher_forced(inputs)
        # the output head only on positions that are predicted
        logits = self.logits(hidden[tmask])
        return logits, targets[tmask]

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        logits, targets = self._scores(batch, scheduled=True)
        n = int(targets.numel())
        if n == 0:
            return {"loss": logits.sum() * 0.0, "n": 0, "accuracy": 0.0}
        loss = F.cross_entropy(logits.float(), targets)
        with torch.no_grad():
            accuracy = (logits.argmax(dim=-1) == targets).float().mean()
        return {"loss": loss, "n": n, "accuracy": accuracy}

    @torch.no_grad()
    def nll(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Summed nats over predicted tokens, always teacher forced (scheduled sampling is a training device)."""
        logits, targets = self._scores(batch, scheduled=False)
        n = int(targets.numel())
        if n == 0:
            return {"nll_sum": 0.0, "n": 0}
        return {"nll_sum": float(F.cross_entropy(logits.float(), targets, reduction="sum")), "n": n}

    # ------------------------------------------------------------- sampling
    def _prepare_primer(self, primer, n: int) -> np.ndarray | None:
        if primer is None:
            return None
        arr = np.asarray(primer)
        if arr.size == 0:
            return None
        if arr.dtype.kind not in "iu":
            raise ConfigError(f"primer must be an array of integer token ids, not {arr.dtype}")
        if arr.ndim == 1:
            arr = np.broadcast_to(arr, (n, arr.shape[0]))
        elif arr.ndim == 2 and arr.shape[0] in (1, n):
            arr = np.broadcast_to(arr, (n, arr.shape[1]))
        else:
            raise ConfigError(f"primer must have shape [P] or [{n}, P], not {list(arr.shape)}")
        V = self.spec.vocab_size
        if arr.min() < 0 or arr.max() >= V:
            bad = int(arr[(arr < 0) | (arr >= V)][0])
            raise ConfigError(f"primer holds token id {bad}, outside this model's vocabulary of {V}")
        return np.array(arr, dtype=np.int64)  # a writable copy

    @torch.no_grad()
    def sample(
        self,
        n: int,
        length: int,
        primer: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        seed: int | None = None,
        **options: Any,
    ) -> np.ndarray:
        """Up to `length` new tokens for each of `n` sequences, as one batch.

        Returns int64 ``[n, P + G]``: each row is its prefix (the primer, or the start token: bos, else a random
        token) followed by its generated tokens. A row that draws eos stops there (eos included); shorter rows are
        padded on the right with pad_id (else eos_id) and the array is trimmed to the longest row, so
        G <= length. `sampling`-style options: temperature, top_k, top_p, greedy; `seed` makes it reproducible
        without touching the global RNG.
        """
        if mask is not None:
            raise ConfigError(f"generator {self.name!r} cannot infill (mask): recurrent generators only continue")
        self.check_sample_options(options)
        sampling.check_options(temperature, top_k, top_p, greedy)
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ConfigError(f"number of samples must be >= 1, not {n}")
        if isinstance(length, bool) or int(length) != length or length < 0:
            raise ConfigError(f"length must be a whole number >= 0, not {length}")
        n, length = int(n), int(length)
        device = self.device
        gen = sampling.make_generator(seed, device)
        spec = self.spec
        eos = spec.eos_id
        fill = spec.pad_id if spec.pad_id is not None else (eos if eos is not None else 0)

        prefix = self._prepare_primer(primer, n)
        if prefix is None:
            if spec.bos_id is not None:
                first = torch.full((n, 1), int(spec.bos_id), dtype=torch.long, device=device)
            else:
                first = torch.randint(spec.vocab_size, (n, 1), generator=gen, device=device)
        else:
            first = torch.from_numpy(prefix).to(device)
        P = first.shape[1]

        was_training = self.training
        self.eval()
        try:
            out = torch.full((n, P + length), fill, dtype=torch.long, device=device)
            out[:, :P] = first
            finished = torch.zeros(n, dtype=torch.bool, device=device)
            lengths = torch.full((n,), P, dtype=torch.long, device=device)
            if length:
                logits, state = self(first)  # the prefix, once
                last = logits[:, -1]
            for t in range(length):
                tok = sampling.draw(last, temperature, top_k, top_p, greedy, gen)
                if eos is not None:
                    tok = torch.where(finished, torch.full_like(tok, fill), tok)
                out[:, P + t] = tok
                lengths = torch.where(finished, lengths, lengths + 1)
                if eos is not None:
                    finished |= tok == eos
                    if (t % 8 == 7 or t == length - 1) and bool(finished.all()):
                        break
                if t + 1 < length:
                    logits, state = self(tok.unsqueeze(1), state)
                    last = logits[:, -1]
        finally:
            self.train(was_training)
        end = int(lengths.max())
        return out[:, :end].cpu().numpy()


class RNNGenerator(RecurrentGenerator):
    """Elman RNN (tanh) language model over tokens."""

    name: ClassVar[str] = "rnn"
    cell: ClassVar[str] = "rnn"


class LSTMGenerator(RecurrentGenerator):
    """LSTM language model over tokens (char-rnn style)."""

    name: ClassVar[str] = "lstm"
    cell: ClassVar[str] = "lstm"


class GRUGenerator(RecurrentGenerator):
    """GRU language model over tokens."""

    name: ClassVar[str] = "gru"
    cell: ClassVar[str] = "gru"
