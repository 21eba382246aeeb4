"""`fmusic render` through the real entry point (a subprocess)."""
from __future__ import annotations

import wave

import numpy as np
import pretty_midi

BOOK = """X:1
T:One
M:2/4
L:1/8
K:G
GABc|d2 d2|]

X:2
T:Two
M:3/4
L:1/8
K:D
D2 F2 A2|d6|]

X:3
T:Three
M:4/4
L:1/8
K:C
C8|]

X:4
T:No music at all
K:C
"""


def test_render_chorale_to_mid_wav_png(cli, tmp_path, chorale_path):
    from fractalmusic.io import read_pieces

    r = cli("render", chorale_path, "--out-dir", tmp_path / "out")
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "out"
    lines = r.stdout.strip().splitlines()
    assert lines == [str(out / "bwv66.6.wav"), str(out / "bwv66.6.mid"), str(out / "bwv66.6.png")]
    (piece,) = read_pieces(chorale_path)
    pm = pretty_midi.PrettyMIDI(str(out / "bwv66.6.mid"))
    assert sum(len(i.notes) for i in pm.instruments) == piece.n_notes == 163
    with wave.open(str(out / "bwv66.6.wav"), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        seconds = w.getnframes() / w.getframerate()
    assert np.abs(x).max() > 20000 and np.sqrt(np.mean(x.astype(float) ** 2)) > 500
    assert abs(seconds - (piece.end_seconds + 0.25)) < 0.01  # 36 beats at 96 qpm
    assert (out / "bwv66.6.png").read_bytes()[:4] == b"\x89PNG"
    assert r.stderr == ""


def test_junk_and_empty_midi_fail_in_one_line(cli, tmp_path):
    junk = tmp_path / "junk.mid"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    for path, reason in ((junk, "not a MIDI file"), (empty, "empty file")):
        r = cli("render", path)
        assert r.exit_code != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and reason in lines[0], r.stderr
        assert "Traceback" not in r.stderr
        assert r.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["empty.mid", "junk.mid"]


def test_unknown_format_and_misplaced_tune_option(cli, tmp_path, chorale_path):
    r = cli("render", chorale_path, "--to", "wav,mp3")
    assert r.exit_code != 0
    expected = "error: unknown output format 'mp3' (choose from abc, mid, musicxml, png, wav)"
    assert r.stderr.strip().splitlines() == [expected]
    r = cli("render", chorale_path, "--tune", "3")
    assert r.exit_code != 0 and r.stderr.startswith("error: --tune applies to ABC files only")


def test_abc_book_renders_every_tune_or_one(cli, tmp_path):
    book = tmp_path / "book.abc"
    book.write_text(BOOK)
    r = cli("render", book, "--to", "abc", "--out-dir", "all")  # ABC out needs no notes: all four tunes
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split() == [f"all/book_X{i}.abc" for i in (1, 2, 3, 4)]
    assert (tmp_path / "all" / "book_X2.abc").read_text().startswith("X:2\nT:Two\n")

    r = cli("render", book, "--to", "mid")  # the tune without notes is skipped with a warning
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split() == ["book_X1.mid", "book_X2.mid", "book_X3.mid"]
    assert r.stderr.strip().splitlines() == [f"warning: skipped {book}#X4: no notes in ABC tune"]
    pm = pretty_midi.PrettyMIDI(str(tmp_path / "book_X2.mid"))
    assert [n.pitch for n in pm.instruments[0].notes] == [62, 66, 69, 74]

    r = cli("render", book, "--tune", "2", "--to", "abc", "--out-dir", "one")
    assert r.exit_code == 0 and r.stdout.split() == ["one/book_X2.abc"]
    r = cli("render", book, "--tune", "9", "--to", "abc")
    assert r.exit_code != 0 and "no tune with X:9" in r.stderr


def test_help_says_abc_output_is_the_top_voice():
    from click.testing import CliRunner

    from fractalmusic.cli.render_cmd import command

    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "TOP VOICE ONLY" in text and "--soundfont" in text and "default: wav,mid,png" in text
