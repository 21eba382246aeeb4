"""`fmusic evaluate --generated ... --reference ...`: Bach chorales against themselves and against random notes."""
from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest

from conftest import music21_corpus_dir

N_CHORALES = 8


@pytest.fixture(scope="session")
def chorale_midis(tmp_path_factory) -> Path:
    """8 Bach chorales from music21's corpus, converted once per session to MIDI through fractalmusic.io."""
    from fractalmusic.io import read_pieces, write_piece

    out = tmp_path_factory.mktemp("chorales")
    for path in sorted((music21_corpus_dir() / "bach").glob("bwv*.mxl"))[:N_CHORALES]:
        (piece,) = read_pieces(path)
        write_piece(piece, out / f"{path.stem}.mid")
    return out


@pytest.fixture(scope="session")
def random_midis(tmp_path_factory) -> Path:
    """8 files of random notes (pitches 20..108, random onsets and lengths), written with mido, fixed seed."""
    out = tmp_path_factory.mktemp("random")
    rng = np.random.default_rng(1234)
    tpb = 480
    for k in range(N_CHORALES):
        n = int(rng.integers(80, 160))
        onsets = np.sort(rng.uniform(0, 64, n))
        lengths = rng.uniform(0.1, 4.0, n)
        pitches = rng.integers(20, 109, n)
        events = []
        for on, length, pitch in zip(onsets, lengths, pitches):
            events.append((round(on * tpb), 1, int(pitch)))
            events.append((round((on + length) * tpb), 0, int(pitch)))
        events.sort(key=lambda e: (e[0], e[1]))  # note-offs first at equal times
        track = mido.MidiTrack()
        now = 0
        for tick, is_on, pitch in events:
            kind = "note_on" if is_on else "note_off"
            track.append(mido.Message(kind, note=pitch, velocity=90 if is_on else 0, time=tick - now))
            now = tick
        midi = mido.MidiFile(ticks_per_beat=tpb)
        midi.tracks.append(track)
        midi.save(out / f"random_{k}.mid")
    return out


def _comparison(res) -> dict:
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["comparison"]


def test_a_set_against_itself_overlaps_everywhere(cli, chorale_midis):
    report = _comparison(cli("evaluate", "--generated", chorale_midis, "--reference", chorale_midis, "--json"))
    assert report["reference"]["pieces"] == report["generated"]["pieces"] == N_CHORALES
    metrics = report["metrics"]
    for name in ("pitch_count", "pitch_class_entropy", "polyphony", "note_length_hist", "scale_consistency",
                 "groove_consistency", "ioi", "notes_per_beat", "empty_beat_rate"):
        assert name in metrics
    for name, m in metrics.items():
        assert m["oa"] is not None and m["oa"] > 0.9, (name, m["oa"])
        assert m["reference"]["mean"] == m["generated"]["mean"]
    assert report["exact_copies"] == N_CHORALES
    # chorales: four voices, diatonic
    assert metrics["polyphony"]["reference"]["mean"] > 3.0
    assert metrics["scale_consistency"]["reference"]["mean"] > 0.85


def test_random_notes_do_not_overlap_chorales(cli, chorale_midis, random_midis, tmp_path):
    png = tmp_path / "plots" / "metrics.png"
    res = cli("evaluate", "--generated", random_midis, "--reference", chorale_midis, "--json", "--png", png)
    report = _comparison(res)
    assert report["mean_oa"] < 0.6
    assert np.mean([m["oa"] for m in report["metrics"].values()]) == pytest.approx(report["mean_oa"])
    assert report["metrics"]["pitch_range"]["oa"] < 0.2
    assert report["metrics"]["pitch_range"]["generated"]["mean"] > 70
    assert report["exact_copies"] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert report["png"] == str(png)


def test_table_output(chorale_midis, random_midis):
    from click.testing import CliRunner

    from fractalmusic.cli.evaluate_cmd import command

    res = CliRunner().invoke(command, ["--generated", str(random_midis), "--reference", str(chorale_midis)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    row = next(line for line in lines if line.startswith("pitch_range"))
    assert "±" in row and len(row.split()) >= 7
    assert any(line.startswith("mean OA:") for line in lines)
    assert any("dotted half" in line for line in lines)  # the histogram's classes are listed


REFERENCE_ABC = """X:1
T:First
M:4/4
L:1/8
K:G
|:GABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA|
GABc dedB|dedB dedB|c2ec B2dB|A2F2 G4:|

X:2
T:Second
M:6/8
L:1/8
K:D
|:A|dfa afd|gfe fdB|AFA dFA|BcB A2:|
"""

GENERATED_ABC = """X:1
T:Copy
M:4/4
L:1/8
K:G
|:GABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA|
GABc dedB|dedB dedB|c2ec B2dB|A2F2 G4:|

X:2
T:New and sloppy
M:3/4
L:1/8
K:C
C2|E2 G2 c2|e2 d2|c2 B2 A2 G2|c6|
"""


def test_abc_sets_report_parse_bars_and_memorisation(cli, tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "gen").mkdir()
    (tmp_path / "ref" / "book.abc").write_text(REFERENCE_ABC)
    (tmp_path / "gen" / "samples.abc").write_text(GENERATED_ABC)
    report = _comparison(cli("evaluate", "--generated", tmp_path / "gen", "--reference", tmp_path / "ref",
                             "--json"))
    m = report["metrics"]
    assert m["parse_ok"]["generated"]["mean"] == 1.0
    # the copy has 32 notes, the sloppy tune 12: both parse with at least 8 notes
    assert m["playable"]["generated"]["mean"] == 1.0
    assert m["header_completeness"]["generated"]["mean"] == 1.0
    # the sloppy tune has 3 inner bars and 2 of them are wrong (4/8 and 8/8 in 3/4); the copy is all right
    assert m["bar_length_consistency"]["generated"]["mean"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert m["bar_length_consistency"]["reference"]["mean"] == 1.0
    mem = report["memorisation"]
    assert mem["exact_copy_rate"] == 0.5 and mem["near_copy_rate"] == 0.5 and mem["reference_tunes"] == 2
    assert report["exact_copies"] == 1


def test_load_set_subsets_files_before_reading(chorale_midis, tmp_path):
    from fractalmusic.metrics.report import load_set

    first = load_set(chorale_midis, max_pieces=3, seed=5)
    again = load_set(chorale_midis, max_pieces=3, seed=5)
    other = load_set(chorale_midis, max_pieces=3, seed=6)
    assert len(first.pieces) == 3 and first.total == N_CHORALES
    assert [p.source for p in first.pieces] == [p.source for p in again.pieces]
    assert [p.source for p in first.pieces] != [p.source for p in other.pieces]
    book = tmp_path / "book.abc"
    book.write_text(REFERENCE_ABC + "\n" + GENERATED_ABC.replace("X:1", "X:3").replace("X:2", "X:4"))
    tunes = load_set(book, max_pieces=2)
    assert len(tunes.pieces) == 2 and tunes.total == 4
    assert len(tunes.abc_texts) == 4  # memorisation still sees every tune


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "CHECKPOINT"),
        (("--reference", "chorales"), "--generated"),
        (("--generated", "nowhere_at_all"), "--reference"),
        (("--generated", "nowhere_at_all", "--reference", "chorales"), "nowhere_at_all"),
        (("--generated", ".", "--reference", ".", "--crop-length", "64"), "--crop-length applies to a CHECKPOINT"),
    ],
)
def test_user_errors_are_one_line(cli, args, message):
    res = cli("evaluate", *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
