"""`fmusic data list / stats / prepare` through the real entry point."""
from __future__ import annotations


def test_data_list_shows_builtins_with_counts_and_terms(cli):
    out = cli("data", "list")
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    folk = next(line for line in lines if line.startswith("folk"))
    assert "files" in folk and "pieces" in folk and "O'Neill" in folk
    assert any(line.startswith("chorales") and " 409 files" in line for line in lines)
    assert "NON-COMMERCIAL" in out.stdout


def test_data_stats_on_abc_tunes_then_prepare_hits_the_cache(cli):
    args = ("--data", "essen", "--repr", "abc", "--max-pieces", "40", "--val-fraction", "0.1", "--crop-length", "64",
            "--num-prep-workers", "1")
    out = cli("data", "stats", *args)
    assert out.exit_code == 0, out.output
    assert "NON-COMMERCIAL" in out.stdout
    assert "essen: 40 pieces from 1 files read, 0 skipped [1 files parsed" in out.stdout
    assert "vocabulary size" in out.stdout and "[fitted]" in out.stdout
    pieces = next(line for line in out.stdout.splitlines() if line.startswith("pieces:"))
    n_train, n_val = int(pieces.split()[1]), int(pieces.split(",")[1].split()[0])
    assert n_train + n_val == 40 and n_val >= 1
    again = cli("data", "prepare", *args)
    assert again.exit_code == 0, again.output
    assert "[0 files parsed, 1 from the cache]" in again.stdout and "vocabulary cached" in again.stdout


def test_data_stats_errors_are_one_line_with_suggestions(cli):
    bad_option = cli("data", "stats", "--data", "folk", "--crop-lenght", "64")
    assert bad_option.exit_code == 2
    assert bad_option.stderr.strip() == "error: no such option: --crop-lenght (did you mean '--crop-length'?)"
    bad_corpus = cli("data", "stats", "--data", "flok", "--repr", "abc")
    assert bad_corpus.exit_code == 2 and "Traceback" not in bad_corpus.output
    assert len(bad_corpus.stderr.strip().splitlines()) == 1 and "did you mean 'folk'?" in bad_corpus.stderr


def test_prepare_writes_the_split_as_list_files(cli, tmp_path, chorale_paths):
    import shutil

    folder = tmp_path / "six"
    folder.mkdir()
    for p in chorale_paths[:6]:
        shutil.copy(p, folder / p.name)
    out = cli("data", "prepare", "--data", folder, "--repr", "pianoroll", "--val-fraction", "0.34",
              "--num-prep-workers", "0", "--write-split", tmp_path / "split")
    assert out.exit_code == 0, out.output
    train = (tmp_path / "split" / "train.txt").read_text().split()
    valid = (tmp_path / "split" / "valid.txt").read_text().split()
    assert train and valid and not set(train) & set(valid)
    assert sorted(train + valid) == sorted(str((folder / p.name).resolve()) for p in chorale_paths[:6])
    # the lists work as corpora: the held-out files alone
    stats = cli("data", "stats", "--data", tmp_path / "split" / "valid.txt", "--repr", "pianoroll",
                "--num-prep-workers", "0")
    assert stats.exit_code == 0, stats.output
    assert f"{len(valid)} pieces from {len(valid)} files read" in stats.stdout
