"""The recurrent family: rnn, lstm and gru language models over token sequences.

embedding -> dropout -> nn.RNN / nn.LSTM / nn.GRU (num_layers, dropout between layers) -> dropout -> output head.
The three generators share everything but the cell. With `tie_weights` the output head reuses the embedding matrix;
when `embedding_dim != hidden_size` a linear projection hidden -> embedding_dim sits in front of it.

Training predicts ``tokens[:, 1:]`` from ``tokens[:, :-1]``. `teacher_forcing_ratio` < 1 turns on scheduled
sampling: during training each input position after the first is replaced, with probability 1 - ratio, by a token
drawn from the model's own prediction for that position (a step-by-step loop, slower than the fused one).

Built on `TokenGenerator` (fractalmusic.generators.token): this module gives the network (`step`) and the training
forward pass; loss, nll and sampling come from the base. Sampling runs all n sequences as one batch and carries the
recurrent state: a primer is run through once, then one time step per generated token; nothing is ever re-fed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from fractalmusic import sampling
from fractalmusic.errors import ConfigError
from fractalmusic.generators.token import TokenGenerator
from fractalmusic.representations.base import RepresentationSpec


@dataclass
class RecurrentConfig:
    """Hyper-parameters of the rnn, lstm and gru generators (each field is a `fmusic train` option)."""

    # sizes measured on the folk corpus with an 8-minute CPU budget (docs/BENCHMARKS.md): 256 x 64 trains about
    # 2.7x more characters per second than 512 x 128 and reaches a lower validation loss in the same minutes
    embedding_dim: int = 64  # token embedding width
    hidden_size: int = 256  # recurrent state width per layer
    num_layers: int = 1  # stacked recurrent layers
    dropout: float = 0.1  # on embeddings, between layers and before the output head
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


def _float_state(state):
    """A recurrent state (a tensor, an LSTM's (h, c) pair, or None) in float32."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.float() for s in state)
    return state.float()


class RecurrentGenerator(TokenGenerator):
    """Common code of the recurrent generators; subclasses only name their cell.

    A `TokenGenerator`: the state carried between `step` calls is the cell's hidden state (None at the start).
    """

    Config: ClassVar[type] = RecurrentConfig
    # measured on the folk corpus with the default sizes: AdamW at 5e-3 reaches a lower held-out loss in 8 CPU
    # minutes than 3e-3 (and 3e-3 than 1e-3)
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 5e-3}
    cell: ClassVar[str] = ""

    def __init__(self, config: RecurrentConfig, spec: RepresentationSpec):
        super().__init__(config, spec)
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
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN's bfloat16 RNN kernels are missing on many CPUs ("could not create a primitive descriptor"):
            # under CPU autocast the cell runs in float32; the embedding and the output head stay in autocast
            with torch.autocast("cpu", enabled=False):
                return self._run_rnn(x.float(), _float_state(state))
        use_ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        if not use_ckpt:
            return self.rnn(x, state)
        if state is None:
            return checkpoint(self.rnn, x, use_reentrant=False)
        return checkpoint(self.rnn, x, state, use_reentrant=False)

    def step(self, tokens: torch.Tensor, state):
        """tokens [B, T] -> (logits [B, T, V], state); `state` (None at the start) carries over between calls."""
        out, state = self._run_rnn(self.drop(self.embedding(tokens)), state)
        return self.logits(out), state

    # ------------------------------------------------------------- training
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

    def predicted_logits(self, inputs: torch.Tensor, keep: torch.Tensor, teacher_forced: bool) -> torch.Tensor:
        """Scheduled sampling when training with `teacher_forcing_ratio` < 1; the output head only where kept."""
        if not teacher_forced and self.training and self.config.teacher_forcing_ratio < 1.0:
            hidden = self._hidden_scheduled(inputs)
        else:
            hidden = self._hidden_teacher_forced(inputs)
        return self.logits(hidden[keep])


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
