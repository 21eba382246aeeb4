"""A tiny token representation, a tiny recurrent generator and a dataset + loader, for testing the trainer alone.

They are registered at run time (`register()`) under the names "fake-tokens" and "fake-gru", so the trainer and
the checkpoint code are exercised exactly as with real plugins, without depending on them.

Run as a script (`python tests/fakes.py CONFIG.json`, also under torchrun) it trains the fake generator with the
Trainer: the subprocess tests (kill during a checkpoint write, DDP) use that.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fractalmusic import plugins
from fractalmusic.errors import ConfigError
from fractalmusic.generators.base import Generator
from fractalmusic.piece import Piece, make_notes
from fractalmusic.representations.base import Representation, RepresentationSpec

REP_NAME = "fake-tokens"
GEN_NAME = "fake-gru"


# --------------------------------------------------------------------------------------------- representation
@dataclass
class FakeTokensConfig:
    low_pitch: int = 60  # pitch of the first note token
    n_pitches: int = 12  # note tokens (one per pitch from low_pitch)


class FakeTokens(Representation):
    """pad 0, bos 1, eos 2, then one token per pitch; every note lasts one beat."""

    name: ClassVar[str] = REP_NAME
    kind: ClassVar[str] = "tokens"
    Config: ClassVar[type] = FakeTokensConfig
    pad_id = 0
    bos_id = 1
    eos_id = 2

    @property
    def vocab_size(self) -> int:
        return 3 + self.config.n_pitches

    def encode(self, piece: Piece) -> np.ndarray:
        pitches = np.asarray(piece.notes["pitch"], dtype=np.int64) - self.config.low_pitch
        pitches = pitches[(pitches >= 0) & (pitches < self.config.n_pitches)]
        return np.concatenate([[self.bos_id], pitches + 3, [self.eos_id]]).astype(np.int64)

    def decode(self, array: np.ndarray) -> Piece:
        ids = np.asarray(array, dtype=np.int64).ravel()
        notes = ids[(ids >= 3) & (ids < self.vocab_size)]
        dropped = int(np.sum((ids < 0) | (ids >= self.vocab_size)))
        rows = [(float(i), 1.0, int(t) - 3 + self.config.low_pitch) for i, t in enumerate(notes)]
        piece = Piece(notes=make_notes(rows))
        piece.meta["repairs"] = {"out_of_range_tokens": dropped} if dropped else {}
        return piece


# --------------------------------------------------------------------------------------------- generator
@dataclass
class FakeGRUConfig:
    hidden_size: int = 16  # GRU width
    dropout: float = 0.1  # after the GRU (so training draws random numbers)
    ballast: int = 0  # extra parameters (to make checkpoints as big as a test needs)

    def __post_init__(self):
        if self.hidden_size < 1:
            raise ConfigError(f"--hidden-size must be >= 1, not {self.hidden_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), not {self.dropout}")


class FakeGRU(Generator):
    name: ClassVar[str] = GEN_NAME
    accepts: ClassVar[tuple[str, ...]] = ("tokens",)
    Config: ClassVar[type] = FakeGRUConfig

    def __init__(self, config: FakeGRUConfig, spec: RepresentationSpec):
        super().__init__(config, spec)
        h = config.hidden_size
        self.embed = nn.Embedding(spec.vocab_size, h)
        self.rnn = nn.GRU(h, h, batch_first=True)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(h, spec.vocab_size)
        self.ballast = nn.Parameter(torch.zeros(config.ballast)) if config.ballast else None

    def _logits(self, inputs: torch.Tensor, state=None):
        out, state = self.rnn(self.embed(inputs), state)
        return self.head(self.drop(out)), state

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        tokens, mask = batch["tokens"], batch["mask"]
        logits, _ = self._logits(tokens[:, :-1])
        weights = mask[:, 1:].float()
        per = F.cross_entropy(logits.float().transpose(1, 2), tokens[:, 1:], reduction="none")
        n = weights.sum()
        loss = (per * weights).sum() / n.clamp(min=1.0)
        if self.ballast is not None:
            loss = loss + 0.0 * self.ballast.sum()
        with torch.no_grad():
            accuracy = ((logits.argmax(-1) == tokens[:, 1:]).float() * weights).sum() / n.clamp(min=1.0)
        return {"loss": loss, "n": n, "accuracy": accuracy}

    @torch.no_grad()
    def sample(self, n, length, primer=None, mask=None, temperature=1.0, top_k=None, top_p=None, greedy=False,
               seed=None, **options):
        self.check_sample_options(options)
        gen = torch.Generator(device="cpu")
        gen.manual_seed(0 if seed is None else int(seed))
        bos = self.spec.bos_id if self.spec.bos_id is not None else 0
        current = torch.full((n, 1), bos, dtype=torch.long, device=self.device)
        out = [current]
        state = None
        for _ in range(length - 1):
            logits, state = self._logits(current, state)
            logits = logits[:, -1].float().cpu() / max(float(temperature), 1e-6)
            if greedy:
                current = logits.argmax(-1, keepdim=True)
            else:
                current = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
            current = current.to(self.device)
            out.append(current)
        return torch.cat(out, dim=1).cpu().numpy().astype(np.int64)


def register() -> None:
    plugins.register("representation", REP_NAME, FakeTokens)
    plugins.register("generator", GEN_NAME, FakeGRU)


# --------------------------------------------------------------------------------------------- data
class FakeSequences(Dataset):
    """`n` learnable sequences (arithmetic progressions of pitch tokens); the window shifts with the epoch."""

    def __init__(self, n: int = 10, length: int = 9, vocab: int = 15, seed: int = 0, ragged: bool = False):
        self.n, self.length, self.vocab, self.seed, self.ragged = n, length, vocab, seed, ragged
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])  # a pure function of (seed, epoch, item)
        start, stride = int(rng.integers(0, self.vocab - 3)), 1 + i % 3
        tokens = 3 + (start + stride * np.arange(self.length)) % (self.vocab - 3)
        tokens[0] = 1
        mask = np.ones(self.length, dtype=bool)
        if self.ragged and i % 2:
            mask[self.length // 2:] = False
            tokens[self.length // 2:] = 0
        return {"tokens": torch.from_numpy(tokens.astype(np.int64)), "mask": torch.from_numpy(mask)}


def make_loader(dataset, batch_size, shuffle, seed=0, epoch=0, num_workers=0, rank=0, world_size=1,
                drop_last=False):
    """Order depends on (seed, epoch) only; shards by rank. No `generator=`: iterating draws from torch's global
    RNG (as a DataLoader does), which the trainer must cope with to resume exactly."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    n = len(dataset)
    if shuffle:
        order = np.random.default_rng([seed, epoch, 12345]).permutation(n)
    else:
        order = np.arange(n)
    if world_size > 1:
        order = np.resize(order, -(-n // world_size) * world_size)[rank::world_size]
    return DataLoader(dataset, batch_size=batch_size, sampler=[int(i) for i in order], drop_last=drop_last,
                      num_workers=num_workers)


def build(hidden_size: int = 16, dropout: float = 0.1, ballast: int = 0, seed: int = 0):
    """(representation, generator) built the way the CLI builds them."""
    register()
    rep = FakeTokens()
    torch.manual_seed(seed)
    gen = FakeGRU.build({"hidden_size": hidden_size, "dropout": dropout, "ballast": ballast}, rep.spec())
    return rep, gen


# --------------------------------------------------------------------------------------------- script
def main(argv: list[str]) -> None:
    """python tests/fakes.py '{"train": {...}, "model": {...}, "n": 10, "length": 9, "val": true}'"""
    from fractalmusic.training import Trainer, TrainConfig

    spec = json.loads(argv[0])
    train = TrainConfig(**spec["train"])
    rep, gen = build(**spec.get("model", {}), seed=train.seed)
    train_ds = FakeSequences(spec.get("n", 10), spec.get("length", 9))
    val_ds = FakeSequences(4, spec.get("length", 9), seed=99) if spec.get("val", True) else None
    trainer = Trainer(gen, rep, train, train_ds, val_ds, make_loader=make_loader)
    stats = trainer.fit()
    if trainer.ctx.is_main:
        print("STATS " + json.dumps({k: v for k, v in stats.items() if k != "metrics"}))
    from fractalmusic.training import distributed

    distributed.teardown(trainer.ctx)


if __name__ == "__main__":
    main(sys.argv[1:])
