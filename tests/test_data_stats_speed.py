"""What keeps `fmusic data stats` / `data prepare` on MIDI folders near symusic's own speed (issue 10): no torch at
start-up, and the fast paths give what the plain ones give."""
from __future__ import annotations

import subprocess
import sys

from fractalmusic.io.midi import midi_bytes
from fractalmusic.piece import Piece, make_notes


def _midi_folder(folder, n=3):
    folder.mkdir()
    for i in range(n):
        notes = make_notes([(b / 2, 0.5, 60 + (b + i) % 12, 80) for b in range(16)])
        (folder / f"song{i}.mid").write_bytes(midi_bytes(Piece(notes=notes)))
    (folder / "empty.mid").write_bytes(b"")
    return folder


def test_data_stats_does_not_start_torch(tmp_path):
    # torch takes seconds to import: on a folder symusic reads in a second, that alone would halve our rate
    folder = _midi_folder(tmp_path / "midi")
    code = (
        "import sys\n"
        "from fractalmusic.cli import main\n"
        f"args = ['data', 'stats', '--data', {str(folder)!r}, '--no-cache', '--val-fraction', '0']\n"
        "for rep in ('pianoroll', 'words'):\n"
        "    try:\n"
        "        main(args + ['--repr', rep])\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, exc.code\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "3 pieces from 3 files read, 1 skipped: 1 empty file (empty.mid)" in out.stdout
    assert out.stdout.strip().endswith("torch imported: False")


def _song(path, pitches, title="song"):
    notes = make_notes([(b / 2, 0.5, p, 80) for b, p in enumerate(pitches)])
    path.write_bytes(midi_bytes(Piece(notes=notes, title=title)))


def test_midi_copies_are_found_hashing_only_pieces_that_could_be_copies(tmp_path):
    # content hashes of notes are made only for pieces whose note count, length and pitch range another piece
    # shares: the copy (other bytes, same notes) is dropped, the look-alike (same facts, other notes) is kept
    from fractalmusic.data.build import prepare_data
    from fractalmusic.data.config import DataConfig
    from fractalmusic.representations.pianoroll import PianoRollRepresentation

    train, valid = tmp_path / "train", tmp_path / "valid"
    train.mkdir()
    valid.mkdir()
    _song(train / "a.mid", [60, 62, 64, 65, 67])
    _song(train / "b.mid", [60, 62, 64, 65, 67], title="another title")  # a copy of a.mid's notes
    _song(train / "c.mid", [60, 64, 62, 65, 67])  # the same facts as a.mid, other notes
    _song(train / "d.mid", [50, 52, 54])
    _song(valid / "v.mid", [50, 52, 54], title="d again")  # a copy of a training piece
    _song(valid / "w.mid", [70, 72])

    def run():
        cfg = DataConfig(data=str(train), val_data=str(valid), cache_dir=str(tmp_path / "cache"),
                         num_prep_workers=0)
        return prepare_data(cfg, PianoRollRepresentation(), log=None)

    for attempt in range(2):  # cold, then warm from the corpus index
        prepared = run()
        lines = prepared.report.lines()
        assert any("train: 1 copies of pieces already read dropped before the split (b.mid = a.mid)" in x
                   for x in lines), lines
        assert any("valid: 1 validation pieces that copy a training piece dropped before the split (v.mid = d.mid)"
                   in x for x in lines), lines
        assert sorted(r.source.rsplit("/", 1)[1] for r in prepared.train_refs) == ["a.mid", "c.mid", "d.mid"]
        assert [r.source.rsplit("/", 1)[1] for r in prepared.val_refs] == ["w.mid"]
        has_content = {r.source.rsplit("/", 1)[1]: "content" in r.summary
                       for r in prepared.train_refs + prepared.val_refs}
        assert has_content == {"a.mid": True, "c.mid": True, "d.mid": True, "w.mid": False}
    # warm, the pieces compared within the training folder had their hashes in its index; only the two that look
    # alike across the folders (d.mid, v.mid) had their notes loaded to be compared
    assert prepared.report.cache_hits.get("pieces") == 2
