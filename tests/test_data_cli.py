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
    # --min-bar-share 0: keep the Essen tunes whose bars disagree with M: (12 of these 40; left out by default)
    args = ("--data", "essen", "--repr", "abc", "--max-pieces", "40", "--val-fraction", "0.1", "--crop-length", "64",
            "--num-prep-workers", "1", "--min-bar-share", "0")
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


def _midi_folder(folder, n=4):
    from fractalmusic.io.midi import write_midi
    from fractalmusic.piece import Piece, make_notes

    folder.mkdir()
    for k in range(n):
        notes = make_notes([(i * 0.5, 0.5, 60 + (i * (k + 2)) % 12) for i in range(16)])
        write_midi(Piece(notes=notes), folder / f"p{k}.mid")
    return folder


def test_data_stats_and_prepare_take_the_data_as_a_bare_path(capsys, tmp_path):
    from conftest import fmusic

    folder = _midi_folder(tmp_path / "midi")
    # a bare PATH means --data PATH, wherever it stands among the options (after a flag too)
    code, out, err = fmusic(capsys, "data", "stats", "--repr", "pianoroll", "--no-cache", folder,
                            "--num-prep-workers", "0")
    assert code == 0, err
    assert "midi: 4 pieces from 4 files read" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("prepared 4 files in ") and last.endswith(" files/s)"), last
    code, out, err = fmusic(capsys, "data", "prepare", folder, "--repr", "words", "--source", "midi",
                            "--num-prep-workers", "0")
    assert code == 0, err
    assert "prepared 4 pieces for words" in out
    # the same as --data PATH: the cache it filled is found
    code, out, err = fmusic(capsys, "data", "stats", "--data", folder, "--repr", "words", "--source", "midi",
                            "--num-prep-workers", "0")
    assert code == 0 and "[0 files parsed, 4 from the cache]" in out, out + err
    # named twice, or two paths: one line, exit code 2
    code, out, err = fmusic(capsys, "data", "stats", folder, "--data", folder, "--repr", "pianoroll")
    assert code == 2 and err.strip() == f"error: the data is named twice: '{folder}' and --data '{folder}'; give one of them"
    code, out, err = fmusic(capsys, "data", "prepare", folder, tmp_path, "--repr", "pianoroll")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "one data folder or file, not 2" in err
    # an option's value is not a path: --crop-length 64 still reads --data's folder
    code, out, err = fmusic(capsys, "data", "stats", "--crop-length", "64", "--data", folder, "--repr", "pianoroll",
                            "--no-cache")
    assert code == 0, err


def test_prepared_time_leaves_out_first_imports(monkeypatch, tmp_path):
    """The time `data stats` prints leaves out the readers' first imports (symusic's alone takes 60-90 ms)."""
    import sys
    import time

    from fractalmusic.data import DataConfig, build
    from fractalmusic.representations.pianoroll import PianoRollRepresentation

    folder = _midi_folder(tmp_path / "midi", 2)
    real = build.load_readers

    def slow_imports(files):  # imports that take a second
        started = time.perf_counter()
        real(files)
        time.sleep(1.0)
        return time.perf_counter() - started

    monkeypatch.setattr(build, "load_readers", slow_imports)
    report = build.prepare_data(DataConfig(data=str(folder), no_cache=True, num_prep_workers=0),
                                PianoRollRepresentation(), log=None).report
    assert 0 < report.seconds < 1.0
    assert "symusic" in sys.modules and "fractalmusic.io.midi" in sys.modules
