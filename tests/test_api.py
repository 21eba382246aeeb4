"""fractalmusic.load(...) -> Model: metadata, sampling, primers, grid requests, writing samples."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import fractalmusic
from fractalmusic import api, plugins
from fractalmusic.errors import CheckpointError, ConfigError, FractalMusicError
from fractalmusic.generators.base import Generator
from fractalmusic.generators.recurrent import LSTMGenerator
from fractalmusic.piece import Piece, make_notes
from fractalmusic.representations.base import Representation
from fractalmusic.training.checkpoint import make_payload, save_checkpoint


def oneills_dir() -> Path:
    import music21.corpus

    return Path(music21.corpus.__file__).parent / "oneills1850"


def corpus_tunes(count: int = 6) -> list[Piece]:
    from fractalmusic.io import read_pieces

    return read_pieces(oneills_dir() / "0001-0050.abc", notes=False)[:count]


SHORT_TUNE = "X:1\nT:Test Reel\nM:4/4\nL:1/8\nK:G\nGABc dedB|dBAG FGAF|GABc dedB|A2G2 G4|]\n"


def train_abc_checkpoint(path: Path, steps: int = 80) -> tuple[Path, list[Piece]]:
    """A tiny LSTM that has memorised one short tune (vocabulary from real tunes), saved as a real checkpoint."""
    from fractalmusic.representations.abc import ABCRepresentation

    tune = Piece(abc=SHORT_TUNE)
    rep = ABCRepresentation().fit(corpus_tunes() + [tune])
    ids = torch.as_tensor(rep.encode(tune))[None]
    torch.manual_seed(0)
    gen = LSTMGenerator.build({"embedding_dim": 32, "hidden_size": 64, "num_layers": 1, "dropout": 0.0}, rep.spec())
    opt = torch.optim.Adam(gen.parameters(), lr=3e-2)
    batch = {"tokens": ids, "mask": torch.ones_like(ids, dtype=torch.bool)}
    gen.train()
    for _ in range(steps):
        out = gen.loss(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    metrics = {"val_loss": out["loss"].item()}
    save_checkpoint(path, make_payload(rep, gen, step=steps, metrics=json.dumps(metrics)))
    return path, [tune]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def abc_ckpt(tmp_path_factory):
    return train_abc_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


# ----------------------------------------------------------------------------------------------- token models


def test_load_gives_model_with_metadata(abc_ckpt):
    path, _ = abc_ckpt
    model = fractalmusic.load(path)
    assert isinstance(model, api.Model)
    assert model.representation.name == "abc"
    assert isinstance(model.generator, LSTMGenerator) and not model.generator.training
    assert model.checkpoint["step"] == 80
    assert model.checkpoint["metrics"]["val_loss"] < 1.0
    assert model.checkpoint["generator_config"]["hidden_size"] == 64
    assert model.kind == "tokens" and model.default_length == 1000
    assert model.default_formats == ["abc", "mid"]


def test_load_rejects_non_checkpoints(tmp_path):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        fractalmusic.load(bogus)
    with pytest.raises(CheckpointError):
        fractalmusic.load(tmp_path / "missing.pt")
    with pytest.raises(ConfigError):
        api.resolve_device("tpu:9")


def test_sample_pieces_reproducible_and_same_as_generator(abc_ckpt):
    path, _ = abc_ckpt
    model = fractalmusic.load(path)
    # hot enough that a model which has memorised its one tune still writes something else with another seed
    a = model.sample(3, length=60, seed=5, temperature=3.0)
    b = model.sample(3, length=60, seed=5, temperature=3.0)
    c = model.sample(3, length=60, seed=6, temperature=3.0)
    assert len(a) == 3 and all(isinstance(p, Piece) and p.abc for p in a)
    assert [p.abc for p in a] == [p.abc for p in b]
    assert [p.abc for p in a] != [p.abc for p in c]
    # the API adds nothing random of its own: the generator with the same seed gives the same tokens
    raw = model.generator.sample(3, 60, seed=5, temperature=1.5)
    rows = model.generate(3, 60, seed=5, temperature=1.5)
    for row, full in zip(rows, raw):
        assert np.array_equal(row, full[: len(row)])
        assert (full[len(row):] == model.representation.pad_id).all()


def test_memorised_tune_comes_back_greedily(abc_ckpt):
    path, (tune,) = abc_ckpt
    model = fractalmusic.load(path)
    rep = model.representation
    (text,) = model.sample_text(1, greedy=True)
    want = rep.array_to_text(rep.encode(tune))
    assert text == want
    ids = model.generate(1, greedy=True)[0]
    assert ids[0] == rep.bos_id and ids[-1] == rep.eos_id  # stopped at eos, well before 1000 tokens


def test_text_primer_is_kept_or_stripped(abc_ckpt):
    path, _ = abc_ckpt
    model = fractalmusic.load(path)
    primer = "X:1\nT:"
    texts = model.sample_text(2, length=30, primer=primer, seed=0)
    assert all(t.startswith(primer) for t in texts)
    stripped = model.sample_text(2, length=30, primer=primer, seed=0, strip_primer=True)
    assert [primer + s for s in stripped] == texts
    ids = model.encode_primer(primer)
    assert ids[0] == model.representation.bos_id and ids[-1] != model.representation.eos_id


def test_file_primer_drops_trailing_eos(abc_ckpt, tmp_path):
    path, (tune,) = abc_ckpt
    model = fractalmusic.load(path)
    f = tmp_path / "primer.abc"
    f.write_text(tune.abc)
    ids = model.encode_primer(str(f))
    full = model.representation.encode(tune)
    assert np.array_equal(ids, full[:-1]) and full[-1] == model.representation.eos_id
    with pytest.raises(FractalMusicError, match="no such primer file"):
        model.encode_primer(str(tmp_path / "absent.abc"))


def test_out_of_vocabulary_primer_is_a_user_error(abc_ckpt):
    model = fractalmusic.load(abc_ckpt[0])
    with pytest.raises(FractalMusicError):
        model.sample(1, length=5, primer="X:1\nT:\u2603\u00e9\u4e2d")


def test_token_models_refuse_grid_options(abc_ckpt):
    model = fractalmusic.load(abc_ckpt[0])
    with pytest.raises(ConfigError, match="grid"):
        model.generate(1, 5, mask_start=0)
    with pytest.raises(ConfigError, match="num_iter"):
        model.generate(1, 5, num_iter=3)


# ----------------------------------------------------------------------------------------------- writing


def test_write_samples_book_numbering_and_parse_count(tmp_path):
    tunes = corpus_tunes(3)
    broken = Piece(abc="X:9\nT:broken\nM:4/4\nK:C\n")  # a header and no notes
    report = api.write_samples(tunes + [broken], tmp_path / "out", ["abc", "mid"])
    assert (report.abc_total, report.abc_parsed) == (4, 3)
    assert report.summary() == f"wrote 4 samples to {tmp_path / 'out'}; ABC: 3 of 4 tunes parse with music21"
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "sample_000.abc", "sample_000.mid", "sample_001.abc", "sample_001.mid", "sample_002.abc",
        "sample_002.mid", "sample_003.abc", "samples.abc",
    ]  # fmt: skip
    assert any("sample_003" in p for p in report.problems)
    book = (tmp_path / "out" / "samples.abc").read_text()
    numbers = [line for line in book.splitlines() if line.startswith("X:")]
    assert numbers == ["X:1", "X:2", "X:3", "X:4"]


def test_output_dir_checks(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(FractalMusicError, match="cannot write to output directory"):
        api.prepare_output_dir(blocker / "samples")
    assert api.prepare_output_dir(tmp_path / "a" / "b").is_dir()


def test_formats():
    assert api.parse_formats("abc, MIDI,mid,xml") == ["abc", "mid", "musicxml"]
    with pytest.raises(ConfigError, match="unknown output format"):
        api.parse_formats("abc,mp3")
    with pytest.raises(ConfigError):
        api.parse_formats(" , ")


# ----------------------------------------------------------------------------------------------- grids


def test_grid_request_shapes():
    primer, mask, cont = api.grid_request(None, 16)
    assert primer is None and mask.shape == (128, 16) and mask.all() and cont is None
    roll = np.zeros((128, 6), dtype=np.int64)
    roll[60, 0] = 2
    primer, mask, cont = api.grid_request(roll, 16)
    assert primer.shape == (128, 16) and primer[60, 0] == 2 and cont == 6
    assert not mask[:, :6].any() and mask[:, 6:].all()
    # a longer primer is cropped; a time range and a pitch band make a rectangle
    long = np.ones((128, 40), dtype=np.int64)
    primer, mask, cont = api.grid_request(long, 16, mask_start=4, mask_end=8, mask_pitch_low=60, mask_pitch_high=71)
    assert primer.shape == (128, 16) and cont is None
    assert mask.sum() == 12 * 4 and mask[60:72, 4:8].all()
    _, mask, _ = api.grid_request(long, 16, mask_pitch_low=100)
    assert mask[100:].all() and not mask[:100].any()


@pytest.mark.parametrize(
    "primer,kwargs,match",
    [
        (None, {"mask_start": 2}, "--primer"),
        (np.zeros((128, 16)), {}, "target width"),
        (np.zeros((128, 4)), {"mask_start": 8, "mask_end": 4}, "mask-start"),
        (np.zeros((128, 4)), {"mask_pitch_low": 70, "mask_pitch_high": 128}, "pitch"),
        (np.zeros((64, 4)), {}, "shape"),
    ],
)
def test_grid_request_errors(primer, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        api.grid_request(primer, 16, **kwargs)


class _OnsetGrid(Representation):
    """Test grid: 0 silence, 1 sustain, 2 onset, one column per sixteenth."""

    name = "test-onset-grid"
    kind = "grid"

    @property
    def vocab_size(self):
        return 3

    def encode(self, piece):
        width = int(np.ceil(piece.end_beat * 4)) if piece.n_notes else 4
        grid = np.zeros((128, width), dtype=np.int64)
        for note in piece.notes:
            on = int(round(note["onset"] * 4))
            grid[note["pitch"], on] = 2
        return grid

    def decode(self, array):
        pitches, steps = np.nonzero(np.asarray(array) == 2)
        return Piece(notes=make_notes([(s / 4, 0.25, p) for p, s in zip(pitches, steps)]))


class _RecordingGridGenerator(Generator):
    """Test generator: fills masked cells with onsets and remembers what it was asked."""

    name = "test-recording-grid"
    accepts = ("grid",)
    sample_options = ("num_iter",)
    calls: list = []

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def sample(self, n, length, primer=None, mask=None, temperature=1.0, top_k=None, top_p=None, greedy=False,
               seed=None, **options):
        self.check_sample_options(options)
        type(self).calls.append({"n": n, "length": length, "primer": primer, "mask": mask, "seed": seed, **options})
        base = np.zeros((128, length), dtype=np.int64) if primer is None else np.array(primer)
        base[mask] = 2
        return np.repeat(base[None], n, axis=0)


@pytest.fixture
def grid_model(tmp_path):
    plugins.register("representation", _OnsetGrid.name, _OnsetGrid)
    plugins.register("generator", _RecordingGridGenerator.name, _RecordingGridGenerator)
    _RecordingGridGenerator.calls = []
    rep = _OnsetGrid()
    gen = _RecordingGridGenerator.build({}, rep.spec())
    path = tmp_path / "grid.pt"
    save_checkpoint(path, make_payload(rep, gen, step=3, data_config=json.dumps({"crop_length": 32})))
    try:
        yield fractalmusic.load(path)
    finally:
        plugins.unregister("representation", _OnsetGrid.name)
        plugins.unregister("generator", _RecordingGridGenerator.name)


def test_grid_model_continuation_infilling_and_options(grid_model):
    model = grid_model
    assert model.default_length == 32 and model.default_formats == ["mid", "png"]
    rows = model.generate(2, seed=4, num_iter=(4, 2))
    call = _RecordingGridGenerator.calls[-1]
    assert call["length"] == 32 and call["primer"] is None and call["mask"].all()
    assert call["num_iter"] == (4, 2) and call["seed"] == 4
    assert len(rows) == 2 and rows[0].shape == (128, 32)

    primer = Piece(notes=make_notes([(0.0, 1.0, 60), (1.0, 1.0, 64)]))  # 8 steps long
    rows = model.generate(1, 16, primer=primer)
    call = _RecordingGridGenerator.calls[-1]
    assert call["primer"][60, 0] == 2 and call["primer"][64, 4] == 2
    assert not call["mask"][:, :8].any() and call["mask"][:, 8:].all()
    stripped = model.generate(1, 16, primer=primer, strip_primer=True)
    assert stripped[0].shape == (128, 8)
    assert np.array_equal(stripped[0], rows[0][:, 8:])

    model.generate(1, 16, primer=primer, mask_start=2, mask_end=6, mask_pitch_low=60, mask_pitch_high=60)
    mask = _RecordingGridGenerator.calls[-1]["mask"]
    assert mask.sum() == 4 and mask[60, 2:6].all()
    with pytest.raises(ConfigError, match="strip-primer"):
        model.generate(1, 16, primer=primer, mask_start=2, strip_primer=True)
    with pytest.raises(ConfigError, match="multiple of 4"):
        model.generate(1, 18)
    with pytest.raises(ConfigError, match="not take"):
        model.generate(1, 16, cfg_scale=2.0)
    with pytest.raises(FractalMusicError, match="text form"):
        model.sample_text(1)
    pieces = model.sample(1, 16, primer=primer)
    assert pieces[0].n_notes == 2 + 128 * 8
