"""Held-out NLL of a checkpoint: a tiny fitted ABC representation + LSTM, saved as a real checkpoint."""
from __future__ import annotations

import json
import math

import pytest
import torch

from fractalmusic.errors import ConfigError
from fractalmusic.metrics.likelihood import evaluate_checkpoint, evaluate_nll, resolve_data_config

TUNES = [
    "X:{n}\nT:Tune {n}\nM:4/4\nL:1/8\nK:{key}\n|:{a}|{b}|{a}|{c}:|\n".format(
        n=i + 1,
        key=key,
        a=a,
        b=b,
        c=c,
    )
    for i, (key, a, b, c) in enumerate(
        [
            ("G", "GABc dedB", "c2ec B2dB", "A2F2 G4"),
            ("D", "DFAF dFAF", "GBdB AFED", "E2D2 D4"),
            ("Am", "A2cA eAcA", "G2BG dGBG", "E2A2 A4"),
            ("C", "CEGE cGEC", "DFAF dAFD", "G2B2 c4"),
            ("Em", "E2GE BEGE", "D2FD ADFD", "B,2E2 E4"),
            ("F", "FAcA fcAF", "GBdB gdBG", "c2A2 F4"),
        ]
    )
]


@pytest.fixture
def tiny_checkpoint(tmp_path):
    from fractalmusic import plugins
    from fractalmusic.config import config_to_dict
    from fractalmusic.data import DataConfig, build_datasets
    from fractalmusic.training.checkpoint import make_payload, save_checkpoint

    book = tmp_path / "tunes.abc"
    book.write_text("\n".join(TUNES))
    cfg = DataConfig(data=str(book), val_fraction=0.34, crop_length=24, num_prep_workers=0)
    rep = plugins.get_representation("abc")()
    build_datasets(cfg, rep, log=None)  # fits the vocabulary on the training tunes
    torch.manual_seed(0)
    gen = plugins.get_generator("lstm").build(
        {"embedding_dim": 8, "hidden_size": 16, "num_layers": 1, "dropout": 0.0}, rep.spec()
    )
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, make_payload(rep, gen, step=7, data_config=json.dumps(config_to_dict(cfg))))
    return path, rep, gen, cfg


def test_nll_is_summed_over_batches_and_converted(tiny_checkpoint):
    path, rep, gen, cfg = tiny_checkpoint
    whole = evaluate_checkpoint(path, batch_size=64)
    assert whole["unit"] == "token" and whole["generator"] == "lstm" and whole["step"] == 7
    assert whole["data"] == cfg.data and whole["crop_length"] == 24 and whole["val_pieces"] >= 1
    nats = whole["nats_per_token"]
    assert nats == pytest.approx(whole["nll_sum"] / whole["n"])
    assert whole["bits_per_token"] == pytest.approx(nats / math.log(2))
    assert whole["perplexity"] == pytest.approx(math.exp(nats))
    # an untrained model is close to uniform over the vocabulary
    assert abs(nats - math.log(rep.vocab_size)) < 1.0
    # batching does not change the sums: one item per batch gives the same nats
    single = evaluate_checkpoint(path, batch_size=1)
    assert single["n"] == whole["n"] and single["batches"] == whole["val_items"]
    assert single["nll_sum"] == pytest.approx(whole["nll_sum"], rel=1e-5)
    # independent check: cross-entropy of each validation window computed here
    from fractalmusic.data import build_datasets

    _, val_ds, _ = build_datasets(cfg, rep, log=None)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(val_ds)):
            tokens = torch.as_tensor(val_ds[i]["tokens"], dtype=torch.long)[None]
            logits = gen.eval()(tokens[:, :-1])
            logits = logits[0] if isinstance(logits, tuple) else logits
            total += float(torch.nn.functional.cross_entropy(logits[0], tokens[0, 1:], reduction="sum"))
            count += tokens.shape[1] - 1
    assert count == whole["n"]
    assert total == pytest.approx(whole["nll_sum"], rel=1e-4)


def test_max_batches_and_overrides(tiny_checkpoint):
    path, *_ = tiny_checkpoint
    full = evaluate_checkpoint(path, batch_size=1)
    first = evaluate_checkpoint(path, batch_size=1, max_batches=1)
    assert first["batches"] == 1 and 0 < first["n"] < full["n"]
    wider = evaluate_checkpoint(path, batch_size=4, data_overrides={"val_fraction": 0.5})
    assert wider["val_pieces"] > full["val_pieces"] and wider["n"] > full["n"]


def test_nll_forward_number_only_for_generators_that_take_it(tiny_checkpoint):
    path, *_ = tiny_checkpoint
    with pytest.raises(ConfigError, match="nll-forward-number"):
        evaluate_checkpoint(path, nll_forward_number=4)

    class Estimated(torch.nn.Module):
        name = "estimated"
        nll_options = ("nll_forward_number",)

        def __init__(self):
            super().__init__()
            self.calls = []

        def nll(self, batch, **options):
            self.calls.append(options)
            return {"nll_sum": float(batch["x"].sum()), "n": int(batch["x"].numel())}

    model = Estimated()
    batches = [{"x": torch.full((2, 3), 1.0)}, {"x": torch.full((1, 3), 4.0)}]
    out = evaluate_nll(model, batches, nll_forward_number=3)
    assert model.calls == [{"nll_forward_number": 3}] * 2
    assert out["n"] == 9 and out["nats"] == pytest.approx((6 + 12) / 9)
    evaluate_nll(model, batches)
    assert model.calls[-1] == {}


def test_default_corpus_when_checkpoint_has_no_data_config(tiny_checkpoint):
    _, rep, _, _ = tiny_checkpoint
    cfg = resolve_data_config({}, rep, {"val_fraction": 0.2})
    assert cfg.data == "folk" and cfg.val_fraction == 0.2
    stored = resolve_data_config({"data_config": json.dumps({"data": "x.abc", "crop_length": 16})}, rep, {})
    assert stored.data == "x.abc" and stored.crop_length == 16


def test_evaluate_cli_on_a_checkpoint(tiny_checkpoint, cli):
    path, *_ = tiny_checkpoint
    samples = path.parent / "samples"
    samples.mkdir()
    (samples / "copied.abc").write_text(TUNES[2].replace("T:Tune 3", "T:Sampled"))
    res = cli("evaluate", str(path), "--json", "--batch-size", "2", "--val-fraction", "0.5", "--device", "cpu",
              "--generated", str(samples))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    lik = out["likelihood"]
    assert lik["val_pieces"] == evaluate_checkpoint(path, data_overrides={"val_fraction": 0.5})["val_pieces"]
    assert lik["bits_per_token"] == pytest.approx(lik["nats_per_token"] / math.log(2))
    # with a checkpoint, generated tunes are compared with its corpus: the sample is a copy of tune 3
    comparison = out["comparison"]
    assert comparison["reference"]["source"] == lik["data"] and comparison["reference"]["pieces"] == len(TUNES)
    assert comparison["memorisation"]["exact_copy_rate"] == 1.0
    # the table, in-process (the subprocess above already proved the entry point)
    from click.testing import CliRunner

    from fractalmusic.cli.evaluate_cmd import command

    text = CliRunner().invoke(command, [str(path), "--max-batches", "1", "--device", "cpu"])
    assert text.exit_code == 0, text.output
    assert "bits/token" in text.output and "perplexity" in text.output and "1 batches" in text.output
    typo = cli("evaluate", str(path), "--val-fractoin", "0.5")
    assert typo.exit_code == 2 and "--val-fraction" in typo.stderr and "Traceback" not in typo.stderr


def test_grid_checkpoint_reports_cells_and_passes_nll_forward_number(tmp_path, monkeypatch):
    from fractalmusic import plugins
    from fractalmusic.config import config_to_dict
    from fractalmusic.data import DataConfig
    from fractalmusic.io import write_piece
    from fractalmusic.piece import Piece, make_notes
    from fractalmusic.training.checkpoint import make_payload, save_checkpoint

    corpus = tmp_path / "midis"
    corpus.mkdir()
    for k in range(4):
        rows = [(i * 0.5, 0.5, 60 + (i * (k + 2)) % 12) for i in range(16)] + [(0, 8, 48 + k)]
        write_piece(Piece(make_notes(rows)), corpus / f"p{k}.mid")
    cfg = DataConfig(data=str(corpus), val_fraction=0.5, crop_length=32, num_prep_workers=0)
    rep = plugins.get_representation("pianoroll")()
    torch.manual_seed(0)
    gen = plugins.get_generator("mar").build({"model_size": "tiny", "max_crop_length": 32}, rep.spec())
    path = tmp_path / "grid.pt"
    save_checkpoint(path, make_payload(rep, gen, data_config=json.dumps(config_to_dict(cfg))))

    seen = []
    cls = type(gen)
    original = cls.nll

    def spy(self, batch, **options):
        seen.append(options)
        return original(self, batch, **options)

    monkeypatch.setattr(cls, "nll", spy)
    result = evaluate_checkpoint(path, batch_size=2, nll_forward_number=2)
    assert seen and all(o == {"nll_forward_number": 2} for o in seen)
    assert result["unit"] == "cell" and "bits_per_cell" in result and result["crop_length"] == 32
    assert result["n"] % 128 == 0  # whole time steps of 128 pitch cells
    note, empty = result["parts"]["note"], result["parts"]["empty"]
    assert note["n"] + empty["n"] == result["n"] and note["n"] > 0
    assert note["nll_sum"] + empty["nll_sum"] == pytest.approx(result["nll_sum"], rel=1e-4)
