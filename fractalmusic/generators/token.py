"""The token-generator base: a plugin writes the network, the base gives `loss`, `nll` and `sample`.

A subclass of `TokenGenerator` implements two methods::

    def init_state(self, batch_size, device):       # carried state / KV cache for a fresh batch (default None)
        ...
    def step(self, tokens, state):                  # tokens LongTensor[B, T] -> (logits FloatTensor[B, T, V], state)
        ...

`step` runs the network over T new tokens that follow whatever `state` has already seen, and returns the logits
predicting the token after each of them plus the state after the last one. Training calls it once per batch with a
fresh state (T = L - 1); sampling calls it once with the whole prefix, then once per generated token (T = 1), so a
recurrent state or a KV cache is never re-fed. With `max_context` set the base feeds a prefix longer than that in
chunks of at most `max_context` tokens and keeps sampling past it: trimming the state to the context it can attend
to is the subclass's job (a KV cache drops its oldest entries).

Batches follow `fractalmusic.generators.base`: ``{"tokens": LongTensor[B, L], "mask": BoolTensor[B, L]}``, mask True
on real tokens. Token t >= 1 is predicted from tokens < t wherever ``mask[:, t]``; positions where the mask is False
may hold any value (even ids outside the vocabulary): the base replaces them with a valid id before the network
sees them, and they never count in the loss.

What the base provides:

* `loss(batch)`: ``{"loss": mean nats per predicted token, "n": how many, "accuracy": share predicted exactly}``.
* `nll(batch)`: ``{"nll_sum": summed nats (float), "n": int}``, teacher forced and without gradients.
* `sample(n, length, primer=None, ...)` (the argument checks, seeding and eval mode are the base `Generator`'s):
  the prefix is the primer (``[P]`` for every row, or ``[n, P]``, integer ids inside the vocabulary), else bos,
  else one token drawn at random; then up to `length` tokens are drawn with temperature / top-k / top-p / greedy
  (`fractalmusic.sampling`), all n rows as one batch. A row that draws eos stops (eos kept); finished rows are
  padded with pad_id (else eos_id) and the array is trimmed to the longest row: int64 ``[n, P + G]``, G <= length.
  Token generators only continue: a `mask` (infilling) is refused.

Two optional hooks change how training sees the network without touching sampling: `predicted_logits` (e.g. compute
the output head only where a token is predicted, or scheduled sampling) and `split_batch`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from fractalmusic import sampling
from fractalmusic.errors import ConfigError
from fractalmusic.generators.base import Generator
from fractalmusic.representations.base import RepresentationSpec


@dataclass
class TokenSampleOptions:
    """Sampling options every token generator offers (a subclass's own SampleOptions may inherit these)."""

    bar_constraint: bool = field(default=False, metadata={
        "help": "ABC character models: track note lengths while sampling and make characters that would overflow "
                "the bar of M:/L: impossible (fractalmusic.abcsyntax.BarGuard)"})


class TokenGenerator(Generator):
    """Base of autoregressive generators over token sequences; subclasses implement `init_state` and `step`."""

    SampleOptions: ClassVar[type | None] = TokenSampleOptions
    # the text of each token id, set by fractalmusic.api.Model when the representation has text (for bar_constraint)
    token_texts: list[str] | None = None

    accepts: ClassVar[tuple[str, ...]] = ("tokens",)
    # the longest context the network can attend to; None = unbounded (a recurrent state)
    max_context: ClassVar[int | None] = None

    def __init__(self, config, spec: RepresentationSpec):
        super().__init__(config, spec)
        V = int(spec.vocab_size)
        if V < 2:
            raise ConfigError(f"generator {self.name!r} needs a vocabulary of at least 2 tokens, not {V}")
        # the id fed to the network where the mask says "no token" (padding may hold anything)
        self.fill_id = int(spec.pad_id) if spec.pad_id is not None and 0 <= spec.pad_id < V else 0

    # ------------------------------------------------------------- the network (subclasses)
    def init_state(self, batch_size: int, device: torch.device) -> Any:
        """The state before any token (a recurrent state, a KV cache); None when `step` starts from nothing."""
        return None

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """tokens ``LongTensor[B, T]`` following `state` -> (logits ``[B, T, vocab_size]``, the new state)."""
        raise NotImplementedError(f"generator {self.name!r} must implement step(tokens, state)")

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """`step` from `state`, or from a fresh `init_state` when state is None."""
        if state is None:
            state = self.init_state(tokens.shape[0], tokens.device)
        return self.step(tokens, state)

    # ------------------------------------------------------------- training
    def split_batch(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs ``[B, L-1]``, targets ``[B, L-1]``, keep ``[B, L-1]``): keep is True where a target is predicted.

        Inputs outside the mask are replaced by `fill_id`, so padding never reaches the embedding.
        """
        tokens = batch["tokens"]
        if tokens.dim() != 2:
            raise ConfigError(f"generator {self.name!r} expects token batches [B, L], got shape {tuple(tokens.shape)}")
        mask = batch.get("mask")
        mask = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask.to(torch.bool)
        inputs = torch.where(mask[:, :-1], tokens[:, :-1], torch.full_like(tokens[:, :-1], self.fill_id))
        targets = torch.where(mask[:, 1:], tokens[:, 1:], torch.full_like(tokens[:, 1:], self.fill_id))
        return inputs, targets, mask[:, 1:]

    def predicted_logits(self, inputs: torch.Tensor, keep: torch.Tensor, teacher_forced: bool) -> torch.Tensor:
        """Logits ``[N, V]`` for the N positions where `keep` is True (row-major order).

        `teacher_forced` is False only for the training loss: a subclass may then train differently (scheduled
        sampling); `nll` always asks for teacher forcing. Default: one `step` over the inputs from a fresh state.
        """
        logits, _ = self.step(inputs, self.init_state(inputs.shape[0], inputs.device))
        return logits[keep]

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        inputs, targets, keep = self.split_batch(batch)
        logits = self.predicted_logits(inputs, keep, teacher_forced=False)
        targets = targets[keep]
        n = int(targets.numel())
        if n == 0:
            return {"loss": logits.sum() * 0.0, "n": 0, "accuracy": 0.0}
        loss = F.cross_entropy(logits.float(), targets)
        with torch.no_grad():
            accuracy = (logits.argmax(dim=-1) == targets).float().mean()
        return {"loss": loss, "n": n, "accuracy": accuracy}

    @torch.no_grad()
    def nll(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Summed nats over the predicted tokens, always teacher forced."""
        inputs, targets, keep = self.split_batch(batch)
        logits = self.predicted_logits(inputs, keep, teacher_forced=True)
        targets = targets[keep]
        n = int(targets.numel())
        if n == 0:
            return {"nll_sum": 0.0, "n": 0}
        return {"nll_sum": float(F.cross_entropy(logits.float(), targets, reduction="sum")), "n": n}

    # ------------------------------------------------------------- sampling
    def prepare_primer(self, primer: Any, n: int) -> np.ndarray | None:
        """The primer as a writable int64 ``[n, P]`` array (None for no primer); ConfigError if unusable."""
        if primer is None:
            return None
        if isinstance(primer, torch.Tensor):
            primer = primer.detach().cpu().numpy()
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
        return np.array(arr, dtype=np.int64)

    def _feed(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Run a prefix through `step`: at once, or in chunks of at most `max_context` tokens; last logits [B, V]."""
        width = tokens.shape[1]
        chunk = width if not self.max_context else max(1, int(self.max_context))
        logits = None
        for start in range(0, width, chunk):
            logits, state = self.step(tokens[:, start:start + chunk], state)
        return logits[:, -1], state

    def draw_samples(
        self,
        n: int,
        length: int,
        *,
        primer: np.ndarray | None,
        mask: np.ndarray | None,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        greedy: bool,
        generator: torch.Generator | None,
        **options: Any,
    ) -> np.ndarray:
        if mask is not None:
            raise ConfigError(f"generator {self.name!r} cannot infill (mask): token generators only continue")
        guard = None
        if options.pop("bar_constraint", False):
            from fractalmusic.abcsyntax import BarGuard

            if not self.token_texts or len(self.token_texts) != self.spec.vocab_size or greedy:
                raise ConfigError("--bar-constraint needs an ABC character model (representation abc) and "
                                  "drawn, not greedy, tokens")
            guard = BarGuard(self.token_texts)
        spec = self.spec
        device = self.device
        eos = spec.eos_id
        fill = spec.pad_id if spec.pad_id is not None else (eos if eos is not None else 0)

        prefix = self.prepare_primer(primer, n)
        if prefix is not None:
            first = torch.from_numpy(prefix).to(device)
        elif spec.bos_id is not None:
            first = torch.full((n, 1), int(spec.bos_id), dtype=torch.long, device=device)
        else:
            first = torch.randint(spec.vocab_size, (n, 1), generator=generator, device=device)
        P = first.shape[1]

        out = torch.full((n, P + length), fill, dtype=torch.long, device=device)
        out[:, :P] = first
        finished = torch.zeros(n, dtype=torch.bool, device=device)
        lengths = torch.full((n,), P, dtype=torch.long, device=device)
        if length:
            last, state = self._feed(first, self.init_state(n, device))  # the prefix, once
        if guard is not None:
            guard.start(["".join(guard.texts[i] for i in row) for row in first.tolist()])
        for t in range(length):
            if guard is not None:
                done = finished.tolist()
                for r in range(n):
                    banned = [] if done[r] else guard.forbidden(r)
                    if banned:
                        last[r, banned] = float("-inf")
            tok = sampling.draw(last, temperature, top_k, top_p, greedy, generator)
            if guard is not None:
                guard.advance(tok.tolist())
            if eos is not None:
                tok = torch.where(finished, torch.full_like(tok, fill), tok)
            out[:, P + t] = tok
            lengths = torch.where(finished, lengths, lengths + 1)
            if eos is not None:
                finished |= tok == eos
                # one host sync every 8 tokens: stop once every row has finished
                if (t % 8 == 7 or t == length - 1) and bool(finished.all()):
                    break
            if t + 1 < length:  # the last draw is never fed back
                logits, state = self.step(tok.unsqueeze(1), state)
                last = logits[:, -1]
        end = int(lengths.max())
        return out[:, :end].cpu().numpy()
