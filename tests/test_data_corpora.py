"""Corpus resolution: built-in names, folders, list files, single files, and the errors for what names nothing."""
from __future__ import annotations

import pytest

from fractalmusic.data.corpora import BUILTINS, builtin_summary, resolve_corpus
from fractalmusic.errors import DataError


def _touch(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_folder_is_searched_recursively_skipping_hidden_and_unsupported(tmp_path):
    root = tmp_path / "music"
    a = _touch(root / "b.mid")
    b = _touch(root / "sub" / "deeper" / "a.ABC")
    c = _touch(root / "sub" / "c.mxl")
    _touch(root / "notes.txt")
    _touch(root / ".hidden" / "x.mid")
    _touch(root / ".y.mid")
    corpus = resolve_corpus(str(root))
    assert corpus.kind == "folder"
    assert corpus.files == sorted([a, b, c])


def test_list_file_paths_are_relative_to_it(tmp_path):
    d = tmp_path / "dataset"
    one = _touch(d / "midi" / "one.mid")
    two = _touch(tmp_path / "elsewhere" / "two.abc")
    folder_song = _touch(d / "more" / "three.krn")
    lst = _touch(
        d / "train.txt",
        "# FractalMIDI-style list\n\nmidi/one.mid\n  ../elsewhere/two.abc  \nmidi/one.mid\nmore\n"
        "missing.mid\nmidi/readme.doc\n",
    )
    _touch(d / "midi" / "readme.doc")
    corpus = resolve_corpus(str(lst))
    assert corpus.kind == "list"
    assert [p.resolve() for p in corpus.files] == [one.resolve(), two.resolve(), folder_song.resolve()]
    reasons = dict(corpus.skipped)
    assert "not found" in reasons["missing.mid"] and "train.txt line 7" in reasons["missing.mid"]
    assert reasons["midi/readme.doc"].startswith("unsupported file type .doc")


def test_list_file_naming_nothing_usable_is_a_data_error(tmp_path):
    lst = _touch(tmp_path / "valid.txt", "# nothing\n\n")
    with pytest.raises(DataError, match="names no files"):
        resolve_corpus(str(lst))
    _touch(lst, "a.mid\nb.mid\n")
    with pytest.raises(DataError, match="none of the 2 entries"):
        resolve_corpus(str(lst))


def test_single_file_and_book(tmp_path):
    book = _touch(tmp_path / "tunes.abc", "X:1\nK:C\nCDE|\n\nX:2\nK:G\nGAB|\n")
    corpus = resolve_corpus(str(book))
    assert corpus.kind == "file" and corpus.files == [book]


def test_unknown_name_suggests_a_builtin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"did you mean 'folk'\?.*built-in corpora: folk, chorales, essen"):
        resolve_corpus("flok")
    _touch(tmp_path / "songs" / "tune1.mid")
    with pytest.raises(DataError, match=r"no such file or folder: .*tune2.mid \(did you mean .*tune1.mid"):
        resolve_corpus(str(tmp_path / "songs" / "tune2.mid"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no music files"):
        resolve_corpus(str(tmp_path / "empty"))


def test_builtins_come_from_music21s_corpus():
    chorales = resolve_corpus("chorales")
    names = {p.name for p in chorales.files}
    assert chorales.kind == "builtin" and 370 <= len(chorales.files) <= 410
    assert "bwv66.6.mxl" in names and "bwv846.mxl" not in names  # a prelude, not a chorale
    assert not any(n.endswith(".krn") for n in names)  # duplicates of .mxl files
    folk = builtin_summary("folk")
    assert folk["files"] > 1000 and 4000 <= folk["pieces"] <= 4300
    assert not any(p.name == "0626-0635.abc" for p in BUILTINS["folk"].files())  # a duplicate transcription
    essen = resolve_corpus("essen")
    assert any("NON-COMMERCIAL" in line for line in essen.notes)
    assert BUILTINS["essen"].explicit_only and not BUILTINS["folk"].explicit_only
