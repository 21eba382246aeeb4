"""Dataset recipes (datasets/, fractalmusic.data.recipes) on small fake layouts of each public corpus.

Every layout is built here from generated files: tiny MIDI files written with mido, a MAESTRO-style CSV with a split
column, POP909's song folders, Lakh's three layouts, GiantMIDI's midis/ folder, Nottingham's ABC books and a dump
of The Session in CSV and JSON. Nothing is downloaded.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import mido
import pytest
from conftest import REPO, fmusic

from fractalmusic.data import recipes
from fractalmusic.data.recipes import hash_split, load_recipe, make_split, session_key, session_tune
from fractalmusic.errors import ConfigError, DataError

SEVEN = ("maestro", "lakh", "pop909", "giantmidi", "nottingham", "thesession", "essen")


def write_midi(path: Path, seed: int, tracks: tuple[str, ...] = ("piano",), pedal: bool = False) -> Path:
    """A short MIDI file whose notes depend on `seed` (the data layer reads byte-identical files once); `pedal`:
    the sustain pedal is down from the start to tick 500 of every track."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mf = mido.MidiFile(ticks_per_beat=96)
    for k, name in enumerate(tracks):
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        if pedal:
            track.append(mido.Message("control_change", control=64, value=127, time=0))
        for i in range(6):
            pitch = 48 + (seed * 7 + i * 3 + k * 12) % 40
            track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
            track.append(mido.Message("note_off", note=pitch, velocity=0, time=48))
        if pedal:
            track.append(mido.Message("control_change", control=64, value=0, time=500 - 6 * 48))
        mf.tracks.append(track)
    mf.save(str(path))
    return path


def read_list(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ the recipes
def test_the_seven_recipes_are_shipped_and_complete():
    assert set(SEVEN) <= set(recipes.recipe_names())
    # the top-level datasets/ of the checkout shows the same files the package ships
    assert (REPO / "datasets" / "maestro.toml").is_file()
    assert sorted(p.name for p in (REPO / "datasets").glob("*.toml")) == sorted(
        p.name for p in recipes.recipes_dir().glob("*.toml"))
    for name in SEVEN:
        r = load_recipe(name)
        assert r.licence and (r.download or r.homepage) and r.files, name
        assert r.representation in ("abc", "words", "pianoroll"), name
    assert load_recipe("maestro").split["method"] == "csv"
    assert load_recipe("essen").commercial_use is False and "NON-COMMERCIAL" in load_recipe("essen").licence
    assert set(load_recipe("lakh").variants) == {"full", "matched", "clean"}
    for spelling in ("lakh/clean", "lakh:clean", "lakh-clean"):
        assert load_recipe(spelling).full_name == "lakh/clean"
    with pytest.raises(ConfigError, match="did you mean 'maestro'"):
        load_recipe("maestor")
    with pytest.raises(ConfigError, match="has no layout 'tiny'"):
        load_recipe("lakh/tiny")


def test_a_recipe_file_given_by_path_is_checked(tmp_path):
    good = tmp_path / "mine.toml"
    good.write_text('name = "mine"\nformat = "midi"\nlicence = "mine"\n[split]\nmethod = "hash"\nvalid = 0.2\n')
    assert load_recipe(str(good)).split["valid"] == 0.2
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nformat = "midi"\nlicence = "x"\n[split]\nvalid = 0.6\ntest = 0.5\n')
    with pytest.raises(ConfigError, match="leave nothing to train on"):
        load_recipe(str(bad))
    (tmp_path / "broken.toml").write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(str(tmp_path / "broken.toml"))


def test_hash_rule_is_the_documented_one():
    import hashlib

    u = int.from_bytes(hashlib.sha256(b"lakh:abc").digest()[:8], "big") / 2.0**64
    expected = "test" if u < 0.05 else "valid" if u < 0.10 else "train"
    assert hash_split("lakh", "abc", 0.05, 0.05) == expected
    shares = [hash_split("x", str(i), 0.1, 0.1) for i in range(4000)]
    assert 0.07 < shares.count("test") / 4000 < 0.13 and 0.07 < shares.count("valid") / 4000 < 0.13


# ------------------------------------------------------------------------------------------------ MAESTRO
MAESTRO_ROWS = [  # (split, midi_filename)
    ("train", "2004/MIDI-Unprocessed_SMF_02_R1_2004_01-05_ORIG_MID--AUDIO_02_R1_2004_05_Track05_wav.midi"),
    ("train", "2004/MIDI-Unprocessed_SMF_05_R1_2004_02-03_ORIG_MID--AUDIO_05_R1_2004_03_Track03_wav.midi"),
    ("validation", "2006/MIDI-Unprocessed_01_R1_2006_01-09_ORIG_MID--AUDIO_01_R1_2006_01_Track01_wav.midi"),
    ("test", "2018/MIDI-Unprocessed_Chamber1_MID--AUDIO_07_R3_2018_wav--2.midi"),
    ("train", "2018/MIDI-Unprocessed_Recital1-3_MID--AUDIO_01_R1_2018_wav--1.midi"),
    ("validation", "2018/MIDI-Unprocessed_Recital4_MID--AUDIO_04_R1_2018_wav--4.midi"),
]


def fake_maestro(root: Path, rows=MAESTRO_ROWS, write_files: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "maestro-v3.0.0.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename",
                    "duration"])
        for i, (split, name) in enumerate(rows):
            w.writerow(["Composer", f"Piece {i}", split, name[:4], name, name.replace(".midi", ".wav"), 30.0 + i])
    if write_files:
        for i, (_, name) in enumerate(rows):
            write_midi(root / name, i)
    return root


def test_maestro_prepare_writes_the_official_split_exactly(tmp_path, capsys):
    root = fake_maestro(tmp_path / "maestro-v3.0.0")
    out = tmp_path / "splits"
    code, stdout, stderr = fmusic(capsys, "data", "prepare", "--dataset", "maestro", "--root", root,
                                  "--write-split", out, "--num-prep-workers", "0", "--crop-length", "16")
    assert code == 0, stderr
    assert "maestro: 6 files (the complete dataset has 1,276): 3 train, 2 valid, 1 test" in stdout
    want = {"train": set(), "valid": set(), "test": set()}
    for split, name in MAESTRO_ROWS:
        want[{"validation": "valid"}.get(split, split)].add(str((root / name).resolve()))
    for split in want:
        assert set(read_list(out / f"{split}.txt")) == want[split], split
    assert "prepared 5 pieces for pianoroll" in stdout  # train + valid were read and encoded with the recipe's repr
    assert "--repr pianoroll --crop-length 16" not in stdout and "--steps-per-beat 8" in stdout


@pytest.mark.parametrize("damage, message", [
    ("no_csv", "has no maestro-v3.0.0.csv (the metadata table with the official split)"),
    ("missing_file", "1 of 6 files named in maestro-v3.0.0.csv are missing"),
    ("bad_split", "split 'holdout' is not one of train, validation, test"),
    ("no_column", "maestro-v3.0.0.csv has no 'midi_filename' column"),
    ("parent", "use --root"),
])
def test_maestro_layout_errors_are_one_line_exit_2(tmp_path, capsys, damage, message):
    root = fake_maestro(tmp_path / "maestro-v3.0.0")
    if damage == "no_csv":
        (root / "maestro-v3.0.0.csv").unlink()
    elif damage == "missing_file":
        (root / MAESTRO_ROWS[3][1]).unlink()
    elif damage == "bad_split":
        fake_maestro(root, [("holdout", MAESTRO_ROWS[0][1])] + MAESTRO_ROWS[1:], write_files=False)
    elif damage == "no_column":
        text = (root / "maestro-v3.0.0.csv").read_text().replace("midi_filename", "midi_file", 1)
        (root / "maestro-v3.0.0.csv").write_text(text)
    elif damage == "parent":
        root = tmp_path
    code, stdout, stderr = fmusic(capsys, "data", "prepare", "--dataset", "maestro", "--root", root,
                                  "--write-split", tmp_path / "o", "--split-only")
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and message in stderr, stderr
    assert "Traceback" not in stderr


def test_maestro_split_is_written_even_when_no_file_is_readable_music(tmp_path, capsys):
    root = fake_maestro(tmp_path / "maestro-v3.0.0", write_files=False)
    for _, name in MAESTRO_ROWS:  # empty files: the split needs only their names
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    code, stdout, stderr = fmusic(capsys, "data", "prepare", "--dataset", "maestro", "--root", root,
                                  "--write-split", tmp_path / "o", "--num-prep-workers", "0")
    assert code == 0, stderr
    assert len(read_list(tmp_path / "o" / "train.txt")) == 3 and len(read_list(tmp_path / "o" / "test.txt")) == 1
    assert stderr.startswith("warning: the split lists are written, but the cache was not filled: no readable music")
    assert len(stderr.strip().splitlines()) == 1


def test_dataset_needs_an_existing_root(tmp_path, capsys):
    code, _, stderr = fmusic(capsys, "data", "prepare", "--dataset", "maestro", "--split-only")
    assert code == 2 and "needs --root" in stderr and "maestro-v3.0.0-midi.zip" in stderr
    code, _, stderr = fmusic(capsys, "data", "prepare", "--dataset", "maestro", "--root", tmp_path / "nope",
                             "--split-only")
    assert code == 2 and "does not exist" in stderr
    code, _, stderr = fmusic(capsys, "data", "prepare", "--root", tmp_path, "--split-only")
    assert code == 2 and "--split-only goes with --dataset" in stderr


# ------------------------------------------------------------------------------------------------ Lakh
def test_lakh_layouts_are_recognised_and_split_by_file_name(tmp_path):
    full = tmp_path / "lmd_full"
    names = [f"{c}{i:031x}" for i, c in enumerate("0123456789abcdef0f")]
    for i, stem in enumerate(names):
        write_midi(full / stem[0] / f"{stem}.mid", i)
    split = make_split(load_recipe("lakh"), full, tmp_path / "o1")
    assert split.recipe.full_name == "lakh/full"
    listed = {s: [Path(p).stem for p in read_list(split.lists[s])] for s in ("train", "valid", "test")}
    assert sorted(sum(listed.values(), [])) == sorted(names)
    for s, stems in listed.items():
        assert all(hash_split("lakh", stem, 0.05, 0.05) == s for stem in stems)

    matched = tmp_path / "lmd_matched"
    write_midi(matched / "A" / "B" / "C" / "TRABCXX12903CD0001" / f"{names[0]}.mid", 0)
    write_midi(matched / "Z" / "Z" / "Y" / "TRZZYXX12903CD0002" / f"{names[0]}.mid", 0)  # same file, second entry
    write_midi(matched / "Z" / "Z" / "Y" / "TRZZYXX12903CD0002" / f"{names[1]}.mid", 1)
    split = make_split(load_recipe("lakh"), matched, tmp_path / "o2")
    assert split.recipe.full_name == "lakh/matched" and split.total == 2
    assert any("copies" in n for n in split.notes)

    clean = tmp_path / "clean_midi"
    for i, song in enumerate(["ABBA/Waterloo.mid", "ABBA/Waterloo.1.mid", "Queen/Bicycle Race.mid"]):
        write_midi(clean / song, i)
    split = make_split(load_recipe("lakh"), clean, tmp_path / "o3")
    assert split.recipe.full_name == "lakh/clean" and split.total == 3
    abba = [s for s in ("train", "valid", "test") if any("ABBA" in p for p in read_list(split.lists[s]))]
    assert len(abba) == 1  # one artist's songs share a split

    import shutil

    shutil.rmtree(full / "f")  # a partial LMD-full is not taken for the clean layout
    with pytest.raises(DataError, match=r"matches none of its layouts \(full: 0, f; matched: A, Z; clean: not with 0\)"):
        make_split(load_recipe("lakh"), full, tmp_path / "o5")
    with pytest.raises(DataError, match=r"has no 0 \(the first of its 16 folders 0-9 a-f\).*lmd_full"):
        make_split(load_recipe("lakh/full"), clean, tmp_path / "o4")


# ------------------------------------------------------------------------------------------------ POP909, GiantMIDI
def test_pop909_lists_final_arrangements_not_drafts(tmp_path):
    root = tmp_path / "POP909"
    for i, song in enumerate(["001", "002", "003", "909"]):
        write_midi(root / song / f"{song}.mid", i, tracks=("MELODY", "BRIDGE", "PIANO"))
        write_midi(root / song / "versions" / f"{song}-v1.mid", 100 + i)
        (root / song / "beat_midi.txt").write_text("0.0 1.0\n")
    split = make_split(load_recipe("pop909"), root, tmp_path / "o")
    listed = sorted(Path(p).name for s in ("train", "valid", "test") for p in read_list(split.lists[s]))
    assert listed == ["001.mid", "002.mid", "003.mid", "909.mid"]
    (root / "909" / "909.mid").unlink()
    import shutil

    shutil.rmtree(root / "909")
    with pytest.raises(DataError, match="has no 909"):
        make_split(load_recipe("pop909"), root, tmp_path / "o")


def test_giantmidi_reads_the_midis_folder(tmp_path, capsys):
    root = tmp_path / "GiantMIDI-Piano"
    for i in range(5):
        write_midi(root / "midis" / f"Composer{i}, First, Work {i}, YtId{i:04d}.mid", i)
    (root / "midis" / "notes.txt").write_text("not music")
    code, stdout, stderr = fmusic(capsys, "data", "prepare", "--dataset", "giantmidi", "--root", root,
                                  "--write-split", tmp_path / "o", "--split-only")
    assert code == 0, stderr
    total = sum(len(read_list(tmp_path / "o" / f"{s}.txt")) for s in ("train", "valid", "test"))
    assert total == 5 and "giantmidi: 5 files (the complete dataset has 10,855)" in stdout
    code, _, stderr = fmusic(capsys, "data", "prepare", "--dataset", "giantmidi", "--root", tmp_path / "o",
                             "--split-only")
    assert code == 2 and "no music files under" in stderr


# ------------------------------------------------------------------------------------------------ ABC collections
def abc_book(first_x: int, n: int, key: str = "G") -> str:
    tunes = []
    for k in range(n):
        x = first_x + k
        notes = " ".join("GABc"[(x + j) % 4] + "2" for j in range(4))
        tunes.append(f"X:{x}\nT:Tune {x}\nM:6/8\nL:1/8\nK:{key}\n|:{notes}|{notes}:|\n")
    return "\n".join(tunes)


def test_nottingham_tunes_are_split_one_by_one_into_books(tmp_path, capsys):
    root = tmp_path / "nottingham-dataset"
    (root / "ABC_cleaned").mkdir(parents=True)
    (root / "ABC_cleaned" / "jigs.abc").write_text(abc_book(1, 12))
    (root / "ABC_cleaned" / "reelsa-c.abc").write_text(abc_book(1, 9, "D"))
    out = tmp_path / "o"
    code, stdout, stderr = fmusic(capsys, "data", "prepare", "--dataset", "nottingham", "--root", root,
                                  "--write-split", out, "--split-only")
    assert code == 0, stderr
    from fractalmusic.io.abc import parse_abc_header, split_abc_book

    seen = []
    for s in ("train", "valid", "test"):
        listed = read_list(out / f"{s}.txt")
        tunes = split_abc_book((out / "abc" / f"{s}.abc").read_text())
        assert listed == ([f"abc/{s}.abc"] if tunes else [])
        for t in tunes:
            h = parse_abc_header(t)
            book = "jigs.abc" if h["K"] == "G" else "reelsa-c.abc"
            assert hash_split("nottingham", f"ABC_cleaned/{book}#{h['X']}", 0.05, 0.05) == s
            seen.append((book, h["X"]))
    assert len(seen) == 21 and len(set(seen)) == 21
    assert "nottingham: 21 tunes (the complete dataset has 1,034)" in stdout


SESSION_ROWS = [
    {"tune_id": "1", "setting_id": "1", "name": "Cooley's", "type": "reel", "meter": "4/4", "mode": "Edorian",
     "abc": "|:D2|EBBA B2 EB|B2 AB dBAG|\r\nFDAD BDAD|FDAD dAFD:|", "date": "2001-05-14", "username": "a"},
    {"tune_id": "1", "setting_id": "12", "name": "Cooley's", "type": "reel", "meter": "4/4", "mode": "Edorian",
     "abc": "EBBA B2 EB|B2 AB dBAG|", "date": "2005-05-14", "username": "b"},
    {"tune_id": "2", "setting_id": "2", "name": "The Kesh", "type": "jig", "meter": "6/8", "mode": "Gmajor",
     "abc": "|:G3 GAB|A3 ABd|edd gdd|edB dBA:|", "date": "2001-05-14", "username": "c"},
    {"tune_id": "3", "setting_id": "3", "name": "Drowsy Maggie", "type": "reel", "meter": "4/4", "mode": "Eminor",
     "abc": "|:E2BE dEBE|E2BE AFDF:|", "date": "2001-05-15", "username": "d"},
    {"tune_id": "4", "setting_id": "4", "name": "Empty", "type": "reel", "meter": "4/4", "mode": "Dmajor",
     "abc": "", "date": "2001-05-15", "username": "e"},
]


def test_session_rows_become_abc_tunes_with_headers():
    assert [session_key(m) for m in ("Edorian", "Aminor", "Dmajor", "F#minor", "Gmixolydian", "Bbmajor")] == [
        "Edor", "Am", "D", "F#m", "Gmix", "Bb"]
    tune = session_tune(SESSION_ROWS[0])
    assert tune.splitlines()[:6] == ["X:1", "T:Cooley's", "R:reel", "M:4/4", "L:1/8", "K:Edor"]
    assert tune.splitlines()[6:] == ["|:D2|EBBA B2 EB|B2 AB dBAG|", "FDAD BDAD|FDAD dAFD:|"]
    from fractalmusic.io.abc import parse_abc_header

    assert parse_abc_header(tune)["K"] == "Edor"


@pytest.mark.parametrize("form", ["csv", "json"])
def test_session_dump_is_split_by_tune_id(tmp_path, capsys, form):
    root = tmp_path / "TheSession-data"
    rows = SESSION_ROWS + [dict(SESSION_ROWS[2], tune_id=str(10 + i), setting_id=str(100 + i), name=f"T{i}")
                           for i in range(30)]
    (root / form).mkdir(parents=True)
    if form == "csv":
        with open(root / "csv" / "tunes.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(SESSION_ROWS[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        (root / "json" / "tunes.json").write_text(json.dumps(rows))
    out = tmp_path / "o"
    code, stdout, stderr = fmusic(capsys, "data", "prepare", "--dataset", "thesession", "--root", root,
                                  "--write-split", out, "--split-only")
    assert code == 0, stderr
    from fractalmusic.io.abc import parse_abc_header, split_abc_book

    where = {}
    for s in ("train", "valid", "test"):
        for t in split_abc_book((out / "abc" / f"{s}.abc").read_text()):
            where[parse_abc_header(t)["X"]] = s
    assert len(where) == len(rows) - 1  # the setting without an abc body is left out
    assert where["1"] == where["12"] == hash_split("thesession", "1", 0.05, 0.05)  # settings of one tune together
    assert "converted 34 settings" in stdout


def test_session_dump_with_other_columns_is_refused(tmp_path, capsys):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "tunes.csv").write_text("id,title\n1,x\n")
    code, _, stderr = fmusic(capsys, "data", "prepare", "--dataset", "thesession", "--root", tmp_path,
                             "--split-only")
    assert code == 2 and "is not The Session's tune dump: no tune_id" in stderr
    code, _, stderr = fmusic(capsys, "data", "prepare", "--dataset", "thesession", "--root", tmp_path / "csv" / "..",
                             "--split-only", "--write-split", tmp_path / "o")
    assert code == 2


def test_essen_needs_no_root_and_splits_every_tune(tmp_path):
    split = make_split(load_recipe("essen"), None, tmp_path / "o")
    assert split.total == load_recipe("essen").pieces == 8462
    assert 0.85 < split.counts["train"] / split.total < 0.95


# ------------------------------------------------------------------------------------------------ list, train
def test_data_list_names_the_recipes(capsys):
    code, stdout, _ = fmusic(capsys, "data", "list")
    assert code == 0
    for name in SEVEN:
        assert any(line.startswith(name + " ") for line in stdout.splitlines()), name
    code, stdout, _ = fmusic(capsys, "data", "list", "--json")
    assert {d["name"] for d in json.loads(stdout)["datasets"]} >= set(SEVEN)


def test_train_on_a_dataset_uses_its_train_and_valid_lists(tmp_path, capsys, one_thread):
    root = tmp_path / "nottingham-dataset"
    (root / "ABC_cleaned").mkdir(parents=True)
    (root / "ABC_cleaned" / "jigs.abc").write_text(abc_book(1, 40))
    split = make_split(load_recipe("nottingham"), root, tmp_path / "o")
    run = tmp_path / "run"
    code, stdout, stderr = fmusic(capsys, "train", "--dataset", "nottingham", "--root", root, "--generator", "lstm",
                                  "--hidden-size", "16", "--max-steps", "2", "--batch-size", "4",
                                  "--output-dir", run, "--num-prep-workers", "0", "--no-progress", "--no-tensorboard")
    assert code == 0, stderr
    assert "dataset nottingham: --repr abc --crop-length 256" in stdout
    assert f"pieces: {split.counts['train']} training, {split.counts['valid']} validation" in stdout
    hp = json.loads((run / "hparams.json").read_text())
    data = hp.get("data") or hp.get("data_config") or {}
    if isinstance(data, str):
        data = json.loads(data)
    assert data["dataset"] == "nottingham" and data["data"].endswith("train.txt")
    # --data beside --dataset is a contradiction, said in one line
    code, _, stderr = fmusic(capsys, "train", "--dataset", "nottingham", "--root", root, "--data", "folk",
                             "--max-steps", "1", "--output-dir", tmp_path / "run2")
    assert code == 2 and "both name the data" in stderr
    code, _, stderr = fmusic(capsys, "train", "--root", root, "--max-steps", "1", "--output-dir", tmp_path / "r3")
    assert code == 2 and "--root goes with --dataset" in stderr


# ------------------------------------------------------------------------------------------------ MIDI transforms
def test_sustain_pedal_holds_notes_until_release_or_restrike():
    from fractalmusic.data.recipes import apply_sustain_pedal

    #          held by the pedal  re-struck at 100  ends after pedal  before the pedal  second pedal
    time = [0, 50, 100, 10, 300, 400]
    duration = [48, 20, 20, 300, 50, 10]
    pitch = [60, 62, 62, 64, 65, 67]
    got = apply_sustain_pedal(time, duration, pitch, [(20, 248), (390, 420)])
    assert got.tolist() == [248 - 0, 100 - 50, 248 - 100, 300, 50, 20]
    assert apply_sustain_pedal(time, duration, pitch, []).tolist() == duration


def test_pop909_melody_variant_keeps_the_melody_track_only(tmp_path):
    import symusic

    root = tmp_path / "POP909"
    for i, song in enumerate(["001", "002", "909"]):
        write_midi(root / song / f"{song}.mid", i, tracks=("MELODY", "BRIDGE", "PIANO"))
    write_midi(root / "003" / "003.mid", 3, tracks=("PIANO",))  # no melody: left out, with why
    split = make_split(load_recipe("pop909/melody"), root, tmp_path / "o")
    listed = [Path(p) for s in ("train", "valid", "test") for p in read_list(split.lists[s])]
    assert sorted(p.name for p in listed) == ["001.mid", "002.mid", "909.mid"]
    assert all(p.is_relative_to((tmp_path / "o" / "midi").resolve()) for p in listed)
    for p in listed:
        assert [t.name for t in symusic.Score(str(p)).tracks] == ["MELODY"]
    assert any("003/003.mid: no MELODY track (tracks: PIANO)" in n for n in split.notes)
    again = make_split(load_recipe("pop909/melody"), root, tmp_path / "o")  # derived copies are kept
    assert any("0 files written, 3 kept" in n for n in again.notes)


def test_maestro_pedal_variant_lists_copies_with_the_pedal_applied(tmp_path, capsys):
    import symusic

    root = fake_maestro(tmp_path / "maestro-v3.0.0", write_files=False)
    for i, (_, name) in enumerate(MAESTRO_ROWS):
        write_midi(root / name, i, pedal=True)
    code, stdout, stderr = fmusic(capsys, "data", "prepare", "--dataset", "maestro/pedal", "--root", root,
                                  "--write-split", tmp_path / "o", "--split-only")
    assert code == 0, stderr
    assert "sustain pedal applied: 6 files written" in stdout
    copy = (tmp_path / "o" / "midi" / MAESTRO_ROWS[0][1]).resolve()
    assert str(copy) in read_list(tmp_path / "o" / "train.txt")
    before = symusic.Score(str(root / MAESTRO_ROWS[0][1])).tracks[0].notes.numpy()
    after = symusic.Score(str(copy)).tracks[0].notes.numpy()
    assert before["duration"].tolist() == [48] * 6
    assert (after["time"] + after["duration"]).max() == 500 and (after["duration"] >= 48).all()
    # the plain recipe lists the dataset's own files, exactly the CSV's
    code, _, _ = fmusic(capsys, "data", "prepare", "--dataset", "maestro", "--root", root, "--write-split",
                        tmp_path / "p", "--split-only")
    assert code == 0 and str((root / MAESTRO_ROWS[0][1]).resolve()) in read_list(tmp_path / "p" / "train.txt")
