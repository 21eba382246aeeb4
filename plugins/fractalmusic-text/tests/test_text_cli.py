"""The seed workflows through `fmusic`, as a user types them: a char LSTM on poems with a primer and top-k, a word
GRU on headlines with perplexity; folders and list files of .txt files."""
from __future__ import annotations

import json
import re

import pytest

from fractalmusic.testing.cli import FmusicRunner

POEMS = """The moon is up, the night is still,
The river sings below the hill.
The wind goes soft across the sea,
And all the stars look down on me.

The moon, the moon, so white and high,
A silver boat upon the sky.
She sails the dark and never sleeps,
She sees the secrets that night keeps.

Upon the hill the old trees stand,
Their roots are deep within the land.
The moon comes up, the shadows run,
They wait all night to see the sun.

The morning comes with light and song,
The night was dark, the night was long.
The moon goes down behind the hill,
The river sings, the world is still.
"""

HEADLINES = """Stocks rise as oil prices fall
Oil prices fall as markets rally
Markets rally on strong jobs report
Jobs report shows strong growth in March
Tech shares lead markets higher
Central bank holds interest rates steady
Interest rates steady as inflation eases
Inflation eases for third month in a row
Oil prices rise on supply worries
Stocks fall as tech shares slide
Tech giant reports record profits
Record profits lift tech shares
Government unveils new budget plan
New budget plan draws criticism
Team wins championship in overtime
Star player leads team to victory
"""

# small networks and crops so that the whole workflow takes seconds; the options are the seed commands'
TINY_LSTM = ["--embedding-dim", "16", "--hidden-size", "32", "--crop-length", "64", "--batch-size", "4"]
QUIET = ["--no-progress", "--device", "cpu", "--num-prep-workers", "0"]


@pytest.fixture
def fmusic(tmp_path, monkeypatch) -> FmusicRunner:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("FRACTALMUSIC_CACHE_DIR", str(tmp_path / "cache"))
    return FmusicRunner(cwd=tmp_path, env={"FRACTALMUSIC_CACHE_DIR": str(tmp_path / "cache")})


def test_char_lstm_on_poems_samples_text_that_starts_with_the_primer(fmusic, tmp_path):
    (tmp_path / "poems.txt").write_text(POEMS * 2)
    res = fmusic("train", "--repr", "text", "--unit", "char", "--generator", "lstm", "--data", "poems.txt",
                 "--max-steps", "30", "--output-dir", "run", *TINY_LSTM, *QUIET).check()
    assert "representation text" in res.output
    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"
    fmusic("sample", ckpt, "--primer", "The moon", "--top-k", "5", "--to", "txt", "--length", "40", "--seed", "3",
           "--out-dir", "samples").check()
    written = sorted((tmp_path / "samples").glob("sample_*.txt"))
    assert len(written) == 4
    texts = [p.read_text(encoding="utf-8") for p in written]
    assert all(t.startswith("The moon") for t in texts), texts
    assert any(len(t.rstrip("\n")) > len("The moon") for t in texts)
    # the default output format of a text checkpoint is txt too
    fmusic("sample", ckpt, "-n", "1", "--length", "5", "--seed", "1", "--out-dir", "default").check()
    assert [p.suffix for p in (tmp_path / "default").iterdir()] == [".txt"]


def test_a_primer_outside_the_vocabulary_is_one_line(fmusic, tmp_path):
    (tmp_path / "poems.txt").write_text(POEMS)
    fmusic("train", "--repr", "text", "--generator", "lstm", "--data", "poems.txt", "--max-steps", "1",
           "--output-dir", "run", *TINY_LSTM, *QUIET).check()
    res = fmusic("sample", tmp_path / "run" / "checkpoints" / "last.pt", "--primer", "Zebra #", "--to", "txt")
    assert res.exit_code == 2 and "does not have" in res.stderr and "Traceback" not in res.output


def test_word_gru_on_headlines_reports_perplexity(fmusic, tmp_path):
    (tmp_path / "headlines.txt").write_text(HEADLINES)
    res = fmusic("train", "--repr", "text", "--unit", "word", "--generator", "gru", "--data", "headlines.txt",
                 "--max-steps", "8", "--val-fraction", "0.25", "--output-dir", "run", *TINY_LSTM, *QUIET).check()
    assert "16 pieces from 1 files" in res.output  # one headline per line
    n_val = int(re.search(r"(\d+) validation", res.output).group(1))
    assert n_val >= 1, res.output
    res = fmusic("evaluate", tmp_path / "run" / "checkpoints" / "best.pt", "--device", "cpu").check()
    assert "perplexity" in res.output
    res = fmusic("evaluate", tmp_path / "run" / "checkpoints" / "best.pt", "--device", "cpu", "--json").check()
    likelihood = json.loads(res.stdout)["likelihood"]
    assert likelihood["n"] > 0 and likelihood["perplexity"] > 1.0


def test_word_options_and_documents_lines(fmusic, tmp_path):
    (tmp_path / "news.txt").write_text("A b\n\nC d\nE f\n")
    res = fmusic("data", "stats", "--repr", "text", "--unit", "word", "--documents", "lines", "--lowercase",
                 "--max-vocab-size", "8", "--min-freq", "1", "--data", "news.txt", "--val-fraction", "0",
                 "--num-prep-workers", "0").check()
    assert "3 pieces" in res.output and "vocabulary size 8" in res.output


def test_folder_and_list_files_of_text(fmusic, tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("one\n\ntwo\n")
    (folder / "sub" / "b.txt").write_text("three\n")
    (folder / "notes.md").write_text("not read\n")
    res = fmusic("data", "stats", "--repr", "text", "--data", "texts", "--val-fraction", "0",
                 "--num-prep-workers", "0").check()
    assert "3 pieces from 2 files" in res.output
    # a list file naming text files: .txt whose every line is an existing path, or .lst
    (tmp_path / "train.txt").write_text("texts/a.txt\ntexts/sub\n")
    (tmp_path / "train.lst").write_text("texts/sub/b.txt\n")
    res = fmusic("data", "stats", "--repr", "text", "--data", "train.txt", "--val-fraction", "0",
                 "--num-prep-workers", "0").check()
    assert "3 pieces from 2 files" in res.output
    res = fmusic("data", "stats", "--repr", "text", "--data", "train.lst", "--val-fraction", "0",
                 "--num-prep-workers", "0").check()
    assert "1 pieces from 1 files" in res.output


def test_unreadable_text_file_is_one_line(fmusic, tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9\n")
    res = fmusic("train", "--repr", "text", "--generator", "lstm", "--data", "bad.txt", "--max-steps", "1",
                 *QUIET)
    assert res.exit_code == 2 and "not UTF-8" in res.stderr and "Traceback" not in res.output
