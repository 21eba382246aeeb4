"""The end-to-end check both contract suites run: `fmusic train` -> resume -> `sample` -> `evaluate`, tiny."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fractalmusic.testing.cli import FmusicRunner, config_args
from fractalmusic.testing.corpus import write_tiny_corpus

# tiny settings of the built-in generators, for pairing a representation under test with a generator
TINY_GENERATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "tokens": ("lstm", {"embedding_dim": 8, "hidden_size": 16, "num_layers": 1, "dropout": 0.0}),
    "grid": ("mar", {"model_size": "tiny", "max_crop_length": 64, "num_iter": (2, 2, 2)}),
}
# and a built-in representation for a generator under test
TINY_REPRESENTATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "tokens": ("abc", {}),
    "grid": ("pianoroll", {}),
}
CROP = {"tokens": 16, "grid": 64}  # training crop: tokens per item / time steps per grid


@dataclass
class EndToEnd:
    """One tiny run through the command line."""

    kind: str  # "tokens" | "grid"
    representation: str
    representation_config: dict[str, Any]
    generator: str
    generator_config: dict[str, Any]
    corpus_format: str  # "abc" | "midi"
    train_args: tuple[str, ...] = ()  # more `fmusic train` options (they may override the defaults below)
    sample_args: tuple[str, ...] = ()  # more `fmusic sample` options (e.g. --to abc)
    steps: tuple[int, int] = (2, 3)  # --max-steps of the first run, then of the resumed one
    results: dict[str, Any] = field(default_factory=dict)

    def run(self, fmusic: FmusicRunner, tmp_path: Path) -> dict[str, Any]:
        data = write_tiny_corpus(tmp_path / "data", self.corpus_format)
        out = tmp_path / "run"
        common = [
            "--repr", self.representation, *config_args(self.representation_config),
            "--generator", self.generator, *config_args(self.generator_config),
            "--data", str(data), "--crop-length", str(CROP[self.kind]), "--batch-size", "4",
            "--val-fraction", "0.25", "--val-batches", "1", "--num-prep-workers", "0",
            "--log-every-n-steps", "1", "--checkpoint-every-n-steps", "1", "--no-progress", "--device", "cpu",
            "--output-dir", str(out), *self.train_args,
        ]  # fmt: skip
        first, second = self.steps
        fmusic("train", *common, "--max-steps", first).check()
        last = out / "checkpoints" / "last.pt"
        assert last.is_file(), f"fmusic train wrote no {last}"

        res = fmusic("train", "--resume-from-checkpoint", "last", "--output-dir", out, "--max-steps", second,
                     "--no-progress", "--device", "cpu").check()
        assert "resumed" in res.output, res.output
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        steps = sorted({r["step"] for r in rows if r.get("split") == "train"})
        assert steps == list(range(1, second + 1)), f"training steps logged: {steps}"
        losses = [r["loss"] for r in rows if r.get("split") == "train"]
        assert all(math.isfinite(v) for v in losses), losses

        size = ("--length", "12") if self.kind == "tokens" else ("--target-width", "16")
        written = []
        for name in ("a", "b"):
            folder = tmp_path / f"samples-{name}"
            fmusic("sample", last, "-n", "2", *size, "--seed", "7", "--out-dir", folder, "--device", "cpu",
                   *self.sample_args).check()
            files = sorted(p for p in folder.iterdir() if p.is_file())
            assert files, f"fmusic sample wrote nothing into {folder}"
            written.append({p.name: p.read_bytes() for p in files})
        assert written[0] == written[1], "fmusic sample with one seed wrote different files"

        res = fmusic("evaluate", last, "--json", "--max-batches", "1", "--batch-size", "2", "--device", "cpu").check()
        report = json.loads(res.stdout)
        likelihood = report["likelihood"]
        assert likelihood["n"] > 0 and math.isfinite(likelihood["nll_sum"]), likelihood
        assert likelihood["generator"] == self.generator.split(":")[-1], likelihood
        self.results = {"checkpoint": last, "samples": written[0], "likelihood": likelihood}
        return self.results
