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
