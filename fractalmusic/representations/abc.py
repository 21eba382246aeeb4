"""`abc`: character-level ABC text, the folk-tune setup of char-RNN labs (MIT 6.S191 lab 1, folk-rnn v1).

Ids: 0 <pad>, 1 <bos>, 2 <eos>, 3 <unk>, then the characters fitted on the corpus, sorted by code point.
A piece is encoded from its ABC text (`piece.abc`), normalised first (whitespace, and in the default
header_mode "musical" only the musical fields); notes are never needed, so ABC books need no music21 parse.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable

import numpy as np

from fractalmusic.abcsyntax import LENGTH_STYLES, header_fields, parse_key, rescale_unit, respell_lengths
from fractalmusic.errors import CheckpointError, ConfigError, DataError, FractalMusicError
from fractalmusic.piece import Piece
from fractalmusic.representations.abc_text import ANNOTATION_MODES, HEADER_MODES, LENGTH_MODES, header_facts, line_fields, normalise_abc, transpose_abc
from fractalmusic.representations.base import Representation

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = 0, 1, 2, 3
_TABLE_LIMIT = 0xFFFF  # code points above this are looked up in a dict instead of the table


@dataclass
class ABCConfig:
    header_mode: str = "musical"  # "musical": only X T M L K Q R P V (+U m) fields; "all": every line
    min_char_freq: int = 1  # characters seen fewer times in the corpus become <unk>
    # "drop": remove text annotations, fingerings, bowings, decorations and layout spacers from tune bodies (chord
    # symbols stay) and join continued lines, so a small model spends its capacity on notes and bars; "keep": every
    # character of the body
    annotations: str = "drop"
    # a training or validation tune whose bars disagree with its M: (fewer than this share of its inner bars have
    # the length M: and L: give, by fractalmusic.metrics.abc: pickups excused) is left out when data is prepared,
    # and counted in the report; measured on the folk corpus, a model trained without them loses its metre less
    # often (docs/BENCHMARKS.md). 0 keeps every tune
    min_bar_share: float = 0.9  # tunes with fewer well-formed bars than this share are not trained on (0: keep all)
    # how lengths below the unit are written in the normalised text (training, validation, primers and any text
    # scored): "short" ("A/" "A//" "A3/", as most folk books write them), "explicit" ("A/2" "A/4" "A3/2", the same
    # lengths) or "keep" (as each tune writes them). O'Neill's 1850 writes about half of its tunes' short lengths
    # the explicit way, the other folk books almost never: a model trained without it paid 9.3 bits for each "2"
    # after a "/" and 1.935 bits/char on its bodies; with "short", 1.85 (docs/BENCHMARKS.md)
    length_spelling: str = "short"  # lengths below the unit: short (A/ A// A3/), explicit (A/2 A/4 A3/2), keep
    # the share of training items whose lengths below the unit are rewritten in one of ABC's two spellings, half
    # in the short one and half in the explicit one (a training-time augmentation; with length_spelling "keep" the
    # model learns both). Measured, not the default: it helped the held-out O'Neill's as much as "short" did but
    # made spaces dearer on every unseen book (docs/BENCHMARKS.md). 0: every item as written
    respell_lengths: float = 0.0  # share of training items respelt either way (augmentation)
    # the share of training items rewritten with another unit length (L:), half with twice the tune's unit and
    # half with half of it, every length rescaled so the music stays the same (`abcsyntax.rescale_unit`). Not
    # measured on a held-out book yet
    rescale_units: float = 0.0  # share of training items with L: doubled or halved (augmentation)

    def __post_init__(self):
        if self.header_mode not in HEADER_MODES:
            raise ConfigError(f"--header-mode must be one of {', '.join(HEADER_MODES)}, not {self.header_mode!r}")
        if int(self.min_char_freq) < 1:
            raise ConfigError(f"--min-char-freq must be at least 1, not {self.min_char_freq}")
        if self.annotations not in ANNOTATION_MODES:
            raise ConfigError(f"--annotations must be one of {', '.join(ANNOTATION_MODES)}, not {self.annotations!r}")
        if self.length_spelling not in LENGTH_MODES:
            raise ConfigError(f"--length-spelling must be one of {', '.join(LENGTH_MODES)}, not {self.length_spelling!r}")
        for flag, share in (("--min-bar-share", self.min_bar_share), ("--respell-lengths", self.respell_lengths),
                            ("--rescale-units", self.rescale_units)):
            if not 0.0 <= float(share) <= 1.0:
                raise ConfigError(f"{flag} must be between 0 and 1, not {share}")


def piece_from_abc_text(text: str, repairs: dict[str, int] | None = None, source: str | None = None) -> Piece:
    """A Piece carrying ABC text, with title, key, metre and tempo read from its header; notes stay empty."""
    facts = header_facts(text)
    piece = Piece(abc=text, title=facts["title"], key=facts["key"], source=source)
    if facts["time_signature"]:
        num, den = facts["time_signature"]
        piece.time_signatures = [(0.0, num, den)]
    if facts["qpm"]:
        piece.tempos = [(0.0, float(facts["qpm"]))]
    piece.meta["repairs"] = dict(repairs or {})
    return piece


def complete_abc_header(text: str, repairs: dict[str, int]) -> str:
    """Clean decoded ABC text so that it is one well-formed tune; repairs are counted in `repairs`.

    Blank lines go ("blank_lines": a blank line would end the tune), a second tune's "X:" line and all after it
    are cut ("second_tune"), "K:C" is added after the header when no K: field exists ("missing_key") and "X:1"
    at the top when the text does not start with an X: field ("missing_x").
    """

    def count(name: str, k: int = 1) -> None:
        if k:
            repairs[name] = repairs.get(name, 0) + k

    raw = text.split("\n")
    while raw and not raw[-1].strip():
        raw.pop()
    lines = [ln for ln in raw if ln.strip()]
    count("blank_lines", len(raw) - len(lines))
    fields = line_fields(lines)
    body = next((i for i, f in enumerate(fields) if f == "K" or (f is None and not lines[i].startswith("%"))), None)
    if body is not None:
        start = body + 1 if fields[body] == "K" else body
        cut = next((i for i in range(start, len(fields)) if fields[i] == "X"), None)
        if cut is not None:
            del lines[cut:], fields[cut:]
            count("second_tune")
    if "K" not in fields:
        at = 0
        while at < len(lines) and (fields[at] is not None or lines[at].startswith("%")):
            at += 1
        lines.insert(at, "K:C")
        fields.insert(at, "K")
        count("missing_key")
    if fields[0] != "X":
        lines.insert(0, "X:1")
        count("missing_x")
    return "\n".join(lines) + "\n"


def as_id_array(array) -> np.ndarray:
    """Any array a model could emit as a flat int64 array (floats truncated, NaN as -1); never raises."""
    arr = np.asarray(array).reshape(-1)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64, copy=False)
    try:
        values = np.nan_to_num(arr.astype(np.float64), nan=-1.0, posinf=-1.0, neginf=-1.0)
    except (TypeError, ValueError):
        return np.full(len(arr), -1, dtype=np.int64)
    values = np.where(np.abs(values) < 2.0**62, values, -1.0)
    return values.astype(np.int64)


def _key_signature(text: str) -> int | None:
    """The header K:'s key signature (sharps > 0, flats < 0), or None when the tune has no readable key."""
    value = header_fields(text).get("K")
    spec = parse_key(value) if value else None
    return None if spec is None else spec.sharps


def _common_range(signatures: Counter[int], tail: float = 0.01, width: int = 6) -> tuple[int, int] | None:
    """The range of key signatures left after dropping, from each end, the rarest signatures while together they
    hold at most `tail` of the tunes (folk corpus: 2 flats to 3 sharps; 3 flats and 4 sharps, 21 of 4,082 tunes,
    fall outside), widened to at least `width` neighbouring signatures (a sharp more, then a flat more, in turn),
    so that a corpus in one or two keys still lets each tune take half of the twelve shifts. None when no tune has
    a readable key."""
    if not signatures:
        return None
    keys = sorted(signatures)
    total = sum(signatures.values())
    lo, hi = 0, len(keys) - 1
    dropped = 0
    while lo < hi:
        cheaper_low = signatures[keys[lo]] <= signatures[keys[hi]]
        n = signatures[keys[lo]] if cheaper_low else signatures[keys[hi]]
        if dropped + n > tail * total:
            break
        dropped += n
        if cheaper_low:
            lo += 1
        else:
            hi -= 1
    low, high = keys[lo], keys[hi]
    sharp_turn = True
    while high - low + 1 < width:  # width <= 15: the -7..7 signatures always hold it
        if sharp_turn and high < 7:
            high += 1
        elif low > -7:
            low -= 1
        else:
            high += 1
        sharp_turn = not sharp_turn
    return low, high


class ABCRepresentation(Representation):
    """Characters of ABC text.

    encode: `[bos, chars..., eos]` of the normalised text; a character the vocabulary lacks (unseen in `fit`, or
    rarer than `min_char_freq`) becomes <unk>. decode: characters up to the first <eos>; <pad>, <bos>, <unk> and
    ids outside the vocabulary are dropped and counted; "X:1" and "K:C" are added when missing. Notes are left
    empty: the io layer parses ABC into notes when it needs them. text_to_array (primers) prepends <bos>, so a
    primer such as "X:1\\nT:" starts a tune, and refuses characters outside the vocabulary.
    """

    name = "abc"
    kind = "tokens"
    Config = ABCConfig
    uses_abc_text = True
    # 2: the config gained `min_bar_share` (the clean-up that leaves out tunes whose bars disagree with M:); a
    # state written before it upgrades to 0, so a resumed run keeps training on the tunes it started with; 3: the
    # config gained `respell_lengths` and `rescale_units`, which upgrade to 0 (a resumed run keeps its items as
    # written)
    state_version = 3
    # a fresh `fmusic train` moves each training crop's tune by a uniform -5..+6 semitones (K: and the notes move
    # together, see `transpose`) unless a --pitch-shift option is given: measured on the folk corpus with one book
    # held out, the LSTM then scores lower bits per character on the unseen book (docs/BENCHMARKS.md). A shift that
    # would land the tune in a key signature the corpus (almost) never uses is refused, so the tune stays where it
    # is: samples come in the corpus's own keys (folk: 2 flats to 3 sharps), not in D flat or F sharp.
    # Not a default, measured (docs/BENCHMARKS.md, folk): `--whole-tunes --crop-length 640` (each item a whole tune
    # from <bos> to <eos>) makes sampled tunes end as the corpus's do and raised music21's bar share from a mean of
    # 0.857 to 0.898 (two runs, four draws each), but cost the held-out book 0.035 bits/char (1.903-1.904 against
    # 1.868, over issue 12's 1.9), so random 256-character crops stay the default.
    data_defaults = ({"pitch_shift_min": -5, "pitch_shift_max": 6},)
    pad_id = PAD
    bos_id = BOS
    eos_id = EOS
    unk_id = UNK

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self._chars: list[str] | None = None
        self._key_range: tuple[int, int] | None = None  # key signatures (sharps > 0, flats < 0) transposing may reach
        self._index: dict[str, int] = {}
        self._table = np.full(1, UNK, dtype=np.int64)  # code point -> id; the last slot answers "too large"
        self._wide = False
        self._id_to_char: list[str] = list(SPECIALS)

    # ------------------------------------------------------------------ vocabulary
    @property
    def is_fitted(self) -> bool:
        return self._chars is not None

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self._chars or ())

    @property
    def chars(self) -> list[str]:
        return list(self._chars or ())

    def normalise(self, text: str) -> str:
        return normalise_abc(text, self.config.header_mode, self.config.annotations, self.config.length_spelling)

    def token_texts(self) -> list[str]:
        """The text of every token id ("" for <pad> <bos> <eos> <unk>): what a sampling constraint reads
        (`fmusic sample --bar-constraint`)."""
        self._require_fitted()
        return [""] * len(SPECIALS) + list(self._chars or ())

    def fit(self, pieces: Iterable[Piece]) -> "ABCRepresentation":
        counts: Counter[str] = Counter()
        signatures: Counter[int] = Counter()
        seen = 0
        for piece in pieces:
            if piece.abc:
                text = self.normalise(piece.abc)
                counts.update(text)
                sharps = _key_signature(text)
                if sharps is not None:
                    signatures[sharps] += 1
                seen += 1
        if not seen:
            raise DataError("the abc representation needs ABC text, and none of the pieces has any")
        self._set_chars(sorted(c for c, n in counts.items() if n >= self.config.min_char_freq))
        self._key_range = _common_range(signatures)
        return self

    def _set_chars(self, chars: list[str]) -> None:
        self._chars = list(chars)
        self._id_to_char = list(SPECIALS) + self._chars
        self._index = {c: i + len(SPECIALS) for i, c in enumerate(self._chars)}
        top = min(max((ord(c) for c in self._chars), default=0), _TABLE_LIMIT)
        self._wide = any(ord(c) >= top + 1 for c in self._chars)
        table = np.full(top + 2, UNK, dtype=np.int64)
        for c, i in self._index.items():
            if ord(c) <= top:
                table[ord(c)] = i
        self._table = table

    def _require_fitted(self) -> None:
        if self._chars is None:
            raise FractalMusicError("the abc representation has no vocabulary yet: fit it on a corpus first")

    def _text_ids(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = self._table[np.minimum(codes, len(self._table) - 1)]
        if self._wide:  # characters beyond the table (rare: astral code points) go through the dict
            for at in np.flatnonzero(codes >= len(self._table) - 1).tolist():
                ids[at] = self._index.get(chr(codes[at]), UNK)
        return ids

    def training_problem(self, piece: Piece) -> str | None:
        """Why a read tune should not be trained on (the data preparation leaves it out and reports it), else None:
        fewer than `min_bar_share` of its inner bars have the length its M: and L: give (its text as normalised,
        i.e. as the model would read it; bars are judged by `fractalmusic.metrics.abc.check_bar_lengths`, which
        excuses a pickup and its complement around a repeat). The folk corpus has about 117 such tunes in 4,082,
        e.g. a tune headed M:2/4 written in bars of 6/8: a model that learns from them learns that a tune may
        change its bar length half-way, which is how its own long tunes fail. Primers and evaluation text are
        never refused: `encode` takes any tune."""
        share = float(self.config.min_bar_share)
        if share <= 0.0 or not piece.abc:
            return None
        from fractalmusic.metrics.abc import check_bar_lengths

        check = check_bar_lengths(self.normalise(piece.abc))
        if not check.judged or check.right >= share * check.judged - 1e-9:
            return None
        return f"bars disagree with M: (under {share:g} of the inner bars right; --min-bar-share 0 keeps them)"

    # ------------------------------------------------------------------ conversion
    def encode(self, piece: Piece) -> np.ndarray:
        self._require_fitted()
        if not piece.abc:
            where = piece.source or "piece"
            raise DataError(f"{where}: the abc representation needs ABC text, and this piece has none")
        ids = self._text_ids(self.normalise(piece.abc))
        out = np.empty(len(ids) + 2, dtype=np.int64)
        out[0], out[-1] = BOS, EOS
        out[1:-1] = ids
        return out

    def _chars_of(self, array: np.ndarray, repairs: dict[str, int] | None) -> tuple[str, bool]:
        """Text of an id array up to the first <eos> (dropping specials and bad ids) and whether <eos> came."""
        arr = as_id_array(array)
        stop = np.flatnonzero(arr == EOS)
        ended = bool(len(stop))
        if ended:
            arr = arr[: stop[0]]
        if len(arr) and arr[0] == BOS:
            arr = arr[1:]
        n = self.vocab_size
        bad = (arr < 0) | (arr >= n)
        special = (arr == PAD) | (arr == BOS)
        unk = arr == UNK
        if repairs is not None:
            for name, mask in (("out_of_range_ids", bad), ("misplaced_specials", special), ("unknown_tokens", unk)):
                k = int(mask.sum())
                if k:
                    repairs[name] = repairs.get(name, 0) + k
        keep = arr[~(bad | special | unk)]
        table = self._id_to_char
        return "".join([table[i] for i in keep.tolist()]), ended

    def decode(self, array: np.ndarray) -> Piece:
        repairs: dict[str, int] = {}
        text, ended = self._chars_of(array, repairs)
        text = complete_abc_header(text, repairs)
        piece = piece_from_abc_text(text, repairs)
        piece.meta["ended"] = ended
        return piece

    def transpose(self, array: np.ndarray, semitones: int) -> tuple[np.ndarray, int] | None:
        """Whole-tune arrays only (the key is read from K:); None when the text cannot be moved honestly, the moved
        text needs characters outside the vocabulary, or its key signature lies outside the range the fitted corpus
        uses (`fit` records it; a state without one lets every key through)."""
        if semitones == 0:
            return np.asarray(array, dtype=np.int64).reshape(-1).copy(), 0

        def move(text: str) -> str | None:
            moved = transpose_abc(text, semitones)
            if moved is not None and self._key_range is not None:
                sharps = _key_signature(moved)
                if sharps is None or not self._key_range[0] <= sharps <= self._key_range[1]:
                    return None
            return moved

        out = self._rewrite_text(array, move)
        return None if out is None else (out, 0)

    def draw_rewrite(self, rng) -> int:
        """How a training item is written: spelling + 3 * unit. spelling: 0 as written, or 1 + the index in
        `LENGTH_STYLES` of the spelling its lengths below the unit take, each with half of `respell_lengths`'
        share; unit: 0 as written, 1 twice the unit, 2 half of it, each with half of `rescale_units`' share. A
        share of 0 draws nothing."""
        variant = 0
        for share, scale in ((float(self.config.respell_lengths), 1), (float(self.config.rescale_units), 3)):
            if share > 0.0:
                u = float(rng.random())
                variant += 0 if u >= share else scale * (1 + int(u >= share / 2))
        return variant

    def rewrite(self, array: np.ndarray, variant: int) -> np.ndarray | None:
        """A whole tune's array written the way `variant` names (see `draw_rewrite`): the same music; the same
        array for variant 0; None when the text holds specials, the unit cannot be rescaled faithfully
        (`abcsyntax.rescale_unit`), or the rewrite needs characters the vocabulary lacks."""
        if variant == 0:
            return np.asarray(array, dtype=np.int64).reshape(-1).copy()
        spelling, unit = int(variant) % 3, int(variant) // 3

        def rewritten(text: str) -> str | None:
            if unit:
                text = rescale_unit(text, 2 if unit == 1 else Fraction(1, 2))
            if text is not None and spelling:
                text = respell_lengths(text, LENGTH_STYLES[spelling - 1])
            return text

        return self._rewrite_text(array, rewritten)

    def _rewrite_text(self, array: np.ndarray, change) -> np.ndarray | None:
        """A whole tune's array with its text (between <bos> and <eos>, each kept where present) replaced by
        `change(text)`; None when the text holds specials, `change` gives None, or its result needs characters the
        vocabulary lacks. What `transpose` and `rewrite` share."""
        arr = np.asarray(array, dtype=np.int64).reshape(-1)
        head = arr[:1] if len(arr) and arr[0] == BOS else arr[:0]
        tail = arr[-1:] if len(arr) > len(head) and arr[-1] == EOS else arr[:0]
        body = arr[len(head) : len(arr) - len(tail)]
        if np.any((body < len(SPECIALS)) | (body >= self.vocab_size)):
            return None
        text = change("".join([self._id_to_char[i] for i in body.tolist()]))
        if text is None:
            return None
        ids = self._text_ids(text)
        if np.any(ids == UNK):
            return None
        return np.concatenate([head, ids, tail]).astype(np.int64)

    def text_to_array(self, text: str) -> np.ndarray:
        self._require_fitted()
        missing = sorted({c for c in text if c not in self._index})
        if missing:
            shown = ", ".join(repr(c) for c in missing[:10])
            raise FractalMusicError(f"the primer uses characters the abc vocabulary does not have: {shown}")
        return np.concatenate([[BOS], self._text_ids(text)]).astype(np.int64)

    def array_to_text(self, array: np.ndarray) -> str:
        return self._chars_of(array, None)[0]

    # ------------------------------------------------------------------ persistence
    # what `normalise` writes, versioned: encoded packs in the data cache are keyed by the fingerprint (this state),
    # so a change to the normalisation must change this number (3: with annotations dropped, backquotes and y
    # spacers go and continued lines are joined; 4: every one-letter decoration H-W and h-w goes; 5: the fitted
    # state also holds the key signatures a transposition may reach, so older cached states are refitted; 6: lengths
    # below the unit written one way, `length_spelling`). load_state ignores it.
    TEXT_VERSION = 6

    @classmethod
    def upgrade_state(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        if from_version < 3:
            config = dict(state.get("config") or {})
            if from_version < 2:
                config.setdefault("min_bar_share", 0.0)
            config.setdefault("respell_lengths", 0.0)
            config.setdefault("rescale_units", 0.0)
            config.setdefault("length_spelling", "keep")
            state = {**state, "config": config}
        return state

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["chars"] = self.chars if self._chars is not None else None
        state["key_range"] = list(self._key_range) if self._key_range is not None else None
        state["text_version"] = self.TEXT_VERSION
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        chars = state.get("chars")
        key_range = state.get("key_range")  # absent in states before text version 5: every key may be reached
        if key_range is not None:
            if (not isinstance(key_range, list) or len(key_range) != 2
                    or not all(isinstance(v, int) and -7 <= v <= 7 for v in key_range) or key_range[0] > key_range[1]):
                raise CheckpointError("abc representation state: 'key_range' must be [lowest, highest] key signature")
            key_range = (key_range[0], key_range[1])
        self._key_range = key_range
        if chars is None:
            self._chars = None
            return
        if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise CheckpointError("abc representation state: 'chars' must be a list of single characters")
        if len(set(chars)) != len(chars):
            raise CheckpointError("abc representation state: 'chars' has duplicates")
        self._set_chars(chars)
