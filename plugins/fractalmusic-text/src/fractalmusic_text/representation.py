"""`text`: plain UTF-8 text as characters or words, for any token generator.

Ids: 0 <unk>, 1 <pad>, 2 <bos>, 3 <eos> (the word-level lab convention, for both units), then the characters or
words fitted on the training corpus, most frequent first (ties in code-point order).

Where the text lives: a document is a `Piece` without notes whose text is `piece.meta["text"]` (the `abc` field is
for ABC tunes and is left empty). A piece without `meta["text"]` but with ABC text is encoded from its ABC text,
so `--repr text` also runs on the built-in ABC corpora.

Reading (`input_suffixes`, `read_file`): the data layer hands every `.txt` file of a corpus (a single file, a
folder of them, or a list file naming them) to `read_file`, which splits it into documents by `--documents`:

* `auto` (default): `blocks` when the file has a blank line between two text lines, else `lines`;
* `blocks`: documents are separated by blank lines (poems, paragraphs);
* `lines`: every non-blank line is a document (headlines, one sentence per line);
* `file`: the whole file is one document.

Units: `char` models every character, new lines included. `word` splits each line on white space (the seed labs'
`text.split()`; `--lowercase` first, as `text.lower().split()`), with a `\\n` token between the lines of a
document, so decoded text keeps its line breaks; words join with single spaces. `--max-vocab-size` (the four
special tokens included) and `--min-freq` send rare units to <unk>, which decodes as `<unk>` (words) or U+FFFD
(characters).

Writing (`output_formats`): `fmusic sample --to txt` writes each sample's text to `sample_NNN.txt`.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np

from fractalmusic.plugin import (
    CheckpointError,
    ConfigError,
    DataError,
    FractalMusicError,
    Piece,
    PieceReadError,
    Representation,
    option,
)

SPECIALS = ("<unk>", "<pad>", "<bos>", "<eos>")
UNK, PAD, BOS, EOS = 0, 1, 2, 3
UNITS = ("char", "word")
DOCUMENT_MODES = ("auto", "blocks", "lines", "file")
NEWLINE = "\n"  # the word unit's line-break token
UNKNOWN_CHAR = "\ufffd"
_BLOCK_SPLIT = re.compile(r"\n[ \t\f\v]*\n")


@dataclass
class TextConfig:
    unit: str = option("char", choices=UNITS,
                       help="char: every character; word: white-space separated words and a line-break token")
    documents: str = option("auto", choices=DOCUMENT_MODES,
                            help="how a .txt file splits into documents: blocks (blank lines), lines, file; "
                                 "auto: blocks when the file has a blank line between text, else lines")
    lowercase: bool = option(False, help="lower-case the text before it is split (text.lower().split())")
    max_vocab_size: int | None = option(None, help="largest vocabulary, the four special tokens included")
    min_freq: int = option(1, help="characters or words seen fewer times in the training corpus become <unk>")

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ConfigError(f"--unit must be one of {', '.join(UNITS)}, not {self.unit!r}")
        if self.documents not in DOCUMENT_MODES:
            raise ConfigError(f"--documents must be one of {', '.join(DOCUMENT_MODES)}, not {self.documents!r}")
        if self.max_vocab_size is not None and int(self.max_vocab_size) <= len(SPECIALS):
            raise ConfigError(
                f"--max-vocab-size must be above {len(SPECIALS)} (the special tokens count), not {self.max_vocab_size}"
            )
        if int(self.min_freq) < 1:
            raise ConfigError(f"--min-freq must be at least 1, not {self.min_freq}")


def split_documents(text: str, mode: str) -> list[str]:
    """The documents of a file's text: blank-line separated blocks, non-blank lines, or the whole text ("auto":
    blocks when there is a blank line between text, else lines)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if mode == "auto":
        mode = "blocks" if _BLOCK_SPLIT.search(text.strip("\n \t")) else "lines"
    if mode == "lines":
        parts = text.split("\n")
    elif mode == "blocks":
        parts = _BLOCK_SPLIT.split(text)
    else:
        parts = [text]
    out = []
    for part in parts:
        lines = [ln.rstrip() for ln in part.strip("\n").split("\n")]
        doc = "\n".join(lines).strip("\n")
        if doc.strip():
            out.append(doc)
    return out


def text_piece(text: str, source: str | None = None, **meta: Any) -> Piece:
    """A document as a Piece: no notes, the text in `meta["text"]`."""
    return Piece(source=source, meta={"text": text, **meta})


def piece_text(piece: Piece) -> str | None:
    """The text a piece carries: `meta["text"]`, else its ABC text, else None."""
    text = piece.meta.get("text") if isinstance(piece.meta, dict) else None
    if isinstance(text, str):
        return text
    return piece.abc if piece.abc else None


class TextRepresentation(Representation):
    """Characters or words of plain text; see the module docstring."""

    name: ClassVar[str] = "text"
    kind: ClassVar[str] = "tokens"
    Config: ClassVar[type] = TextConfig
    plugin_api_version: ClassVar[int] = 2  # input_suffixes, read_file, output_formats, write_output
    input_suffixes: ClassVar[tuple[str, ...]] = (".txt",)
    output_formats: ClassVar[tuple[str, ...]] = ("txt",)
    default_output_formats: ClassVar[tuple[str, ...] | None] = ("txt",)
    # encode() reads piece.abc when a piece has no meta["text"], so ABC tune books need no music21 parse
    uses_abc_text = True
    pad_id = PAD
    bos_id = BOS
    eos_id = EOS
    unk_id = UNK

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self._tokens: list[str] | None = None
        self._index: dict[str, int] = {}

    # ------------------------------------------------------------------ reading and writing files
    def read_file(self, path) -> list[Piece]:
        """The documents of one UTF-8 text file (split by `--documents`); PieceReadError if none."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise PieceReadError(path, "no such file") from None
        except OSError as exc:
            raise PieceReadError(path, exc.strerror or "cannot be read") from None
        if b"\x00" in raw:
            raise PieceReadError(path, "not a text file (it holds NUL bytes)")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PieceReadError(path, f"not UTF-8 text (byte {exc.start})") from None
        docs = split_documents(text, self.config.documents)
        if not docs:
            raise PieceReadError(path, "no text")
        return [text_piece(doc, source=f"{path}#{i}") for i, doc in enumerate(docs, start=1)]

    def write_output(self, piece: Piece, path, fmt: str) -> Path:
        """`fmt` "txt": the piece's text, UTF-8, ending with a new line."""
        if fmt != "txt":
            raise ConfigError(f"the text representation writes txt, not {fmt!r}")
        text = piece_text(piece)
        if text is None:
            raise FractalMusicError(f"{path}: this piece carries no text")
        path = Path(path)
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        return path

    # ------------------------------------------------------------------ units
    def units(self, text: str) -> list[str]:
        """A text as the units the vocabulary counts: characters, or words with line-break tokens."""
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self.config.lowercase:
            text = text.lower()
        if self.config.unit == "char":
            return list(text)
        out: list[str] = []
        for i, line in enumerate(text.split("\n")):
            if i:
                out.append(NEWLINE)
            out.extend(line.split())
        return out

    def join(self, units: list[str]) -> str:
        if self.config.unit == "char":
            return "".join(units)
        lines, current = [], []
        for u in units:
            if u == NEWLINE:
                lines.append(" ".join(current))
                current = []
            else:
                current.append(u)
        lines.append(" ".join(current))
        return "\n".join(lines)

    # ------------------------------------------------------------------ vocabulary
    @property
    def is_fitted(self) -> bool:
        return self._tokens is not None

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self._tokens or ())

    @property
    def tokens(self) -> list[str]:
        """The fitted vocabulary after the special tokens, in id order."""
        return list(self._tokens or ())

    def fit(self, pieces: Iterable[Piece]) -> "TextRepresentation":
        counts: Counter[str] = Counter()
        seen = 0
        for piece in pieces:
            text = piece_text(piece)
            if text is not None:
                counts.update(self.units(text))
                seen += 1
        if not seen:
            raise DataError("the text representation needs text, and none of the pieces has any")
        ranked = sorted(
            ((u, n) for u, n in counts.items() if n >= self.config.min_freq and u not in SPECIALS),
            key=lambda un: (-un[1], un[0]),
        )
        if self.config.max_vocab_size is not None:
            ranked = ranked[: int(self.config.max_vocab_size) - len(SPECIALS)]
        self._set_tokens([u for u, _ in ranked])
        return self

    def _set_tokens(self, tokens: list[str]) -> None:
        self._tokens = list(tokens)
        self._index = {u: i + len(SPECIALS) for i, u in enumerate(self._tokens)}

    def _require_fitted(self) -> None:
        if self._tokens is None:
            raise FractalMusicError("the text representation has no vocabulary yet: fit it on a corpus first")

    def _ids(self, units: list[str]) -> np.ndarray:
        index = self._index
        return np.fromiter((index.get(u, UNK) for u in units), dtype=np.int64, count=len(units))

    # ------------------------------------------------------------------ conversion
    def encode(self, piece: Piece) -> np.ndarray:
        """`[bos, units..., eos]`; units missing from the vocabulary become <unk>."""
        self._require_fitted()
        text = piece_text(piece)
        if text is None:
            raise DataError(f"{piece.source or 'piece'}: the text representation needs text, and this piece has none")
        ids = self._ids(self.units(text))
        return np.concatenate([[BOS], ids, [EOS]]).astype(np.int64)

    def _units_of(self, array, repairs: dict[str, int] | None) -> tuple[list[str], bool]:
        arr = np.asarray(array).reshape(-1)
        if arr.dtype.kind not in "iub":
            try:
                values = np.nan_to_num(arr.astype(np.float64), nan=-1.0, posinf=-1.0, neginf=-1.0)
            except (TypeError, ValueError):
                values = np.full(len(arr), -1.0)
            arr = np.where(np.abs(values) < 2.0**62, values, -1.0)
        arr = arr.astype(np.int64)
        stop = np.flatnonzero(arr == EOS)
        ended = bool(len(stop))
        if ended:
            arr = arr[: stop[0]]
        if len(arr) and arr[0] == BOS:
            arr = arr[1:]
        bad = (arr < 0) | (arr >= self.vocab_size)
        special = (arr == PAD) | (arr == BOS)
        if repairs is not None:
            for name, mask in (("out_of_range_ids", bad), ("misplaced_specials", special), ("unknown_tokens", arr == UNK)):
                k = int(mask.sum())
                if k:
                    repairs[name] = repairs.get(name, 0) + k
        unknown = UNKNOWN_CHAR if self.config.unit == "char" else "<unk>"
        table = [unknown, "", "", ""] + (self._tokens or [])
        return [table[i] for i in arr[~(bad | special)].tolist()], ended

    def decode(self, array: np.ndarray) -> Piece:
        """Text up to the first <eos>; <pad>/<bos> and ids outside the vocabulary are dropped and counted."""
        repairs: dict[str, int] = {}
        units, ended = self._units_of(array, repairs)
        return text_piece(self.join(units), repairs=repairs, ended=ended)

    def text_to_array(self, text: str) -> np.ndarray:
        """A primer: `[bos, units...]`. Characters the vocabulary lacks are refused; unknown words become <unk>."""
        self._require_fitted()
        units = self.units(text)
        if self.config.unit == "char":
            missing = sorted({u for u in units if u not in self._index})
            if missing:
                shown = ", ".join(repr(c) for c in missing[:10])
                raise FractalMusicError(f"the primer uses characters the text vocabulary does not have: {shown}")
        return np.concatenate([[BOS], self._ids(units)]).astype(np.int64)

    def array_to_text(self, array: np.ndarray) -> str:
        return self.join(self._units_of(array, None)[0])

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["tokens"] = self.tokens if self._tokens is not None else None
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        tokens = state.get("tokens")
        if tokens is None:
            self._tokens, self._index = None, {}
            return
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise CheckpointError("text representation state: 'tokens' must be a list of non-empty strings")
        if len(set(tokens)) != len(tokens) or any(t in SPECIALS for t in tokens):
            raise CheckpointError("text representation state: 'tokens' has duplicates or special tokens")
        if self.config.unit == "char" and any(len(t) != 1 for t in tokens):
            raise CheckpointError("text representation state: a char vocabulary holds single characters only")
        self._set_tokens(tokens)
