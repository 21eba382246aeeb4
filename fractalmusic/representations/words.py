"""`words`: word-level vocabularies, for ABC tunes (folk-rnn style words) and for MIDI (REMI-like event words).

Ids: 0 <unk>, 1 <pad>, 2 <bos>, 3 <eos> (the word-level lab convention), then words by descending corpus
frequency (ties in natural order: "Pitch_9" before "Pitch_10").

* ABC words (piece.abc set, or source="abc"): "M:6/8", "K:Gmin", "^c'2", "A/2", "z3", "|:", ":|2", "(3", ">",
  "[", "]2", "{", "}", "-", "~", "!trill!", '"Am"' ... (see `abc_text.abc_words`).
* MIDI words (pieces without ABC, or source="midi"): "TS_4/4" "Tempo_120" at the start, then per bar "Bar"
  (followed by "TS_n/d" or "Tempo_q" when they change), and per onset time "Pos_k" (steps into the bar) followed
  by "Pitch_p" "Dur_d" "Vel_v" for each note starting there. Pitch_0..127, Dur_1..max_duration_steps,
  Vel_0..velocity_bins-1, Pos_0.. (the longest bar) and every Tempo_ bin are always in a vocabulary that has MIDI
  words, so a pitch shift never makes <unk>.
"""
from __future__ import annotations

import functools
import math
import re
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from fractalmusic.errors import CheckpointError, ConfigError, DataError, FractalMusicError
from fractalmusic.piece import NOTE_DTYPE, Piece
from fractalmusic.representations.abc import as_id_array, piece_from_abc_text
from fractalmusic.representations.abc_text import HEADER_MODES, abc_words, transpose_abc, words_to_abc
from fractalmusic.representations.base import Representation
from fractalmusic.representations.pianoroll import beats_to_steps, bin_to_velocity, velocity_table, velocity_to_bin

SPECIALS = ("<unk>", "<pad>", "<bos>", "<eos>")
UNK, PAD, BOS, EOS = 0, 1, 2, 3
SOURCES = ("auto", "abc", "midi")

TEMPO_BINS = (40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 132, 144, 160, 176, 192, 208, 224, 240)
COMMON_TIME_SIGNATURES = ((2, 2), (3, 2), (2, 4), (3, 4), (4, 4), (5, 4), (6, 4), (3, 8), (5, 8), (6, 8), (7, 8),
                          (9, 8), (12, 8))  # fmt: skip

# word kinds
K_SPECIAL, K_ABC, K_BAR, K_POS, K_PITCH, K_DUR, K_VEL, K_TS, K_TEMPO = range(9)
_MIDI_WORD = re.compile(r"^(?:Bar|Pos_(\d+)|Pitch_(\d+)|Dur_(\d+)|Vel_(\d+)|TS_(\d+)/(\d+)|Tempo_(\d+))$")


@functools.lru_cache(maxsize=1 << 16)  # a vocabulary is sorted by it twice per fit; words repeat across fits
def _natural_key(word: str):
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", word))


def tempo_bin(qpm: float) -> int:
    """The TEMPO_BINS value nearest to `qpm` on a log scale."""
    q = max(float(qpm), 1e-3)
    return min(TEMPO_BINS, key=lambda b: abs(math.log(b / q)))


_BINS = np.array(TEMPO_BINS, dtype=np.float64)
_SHIFT = 40  # MIDI word codes: kind << 40 | value
_TS_MAX = 1 << 20


def _tempo_bins(qpm: np.ndarray) -> np.ndarray:
    """tempo_bin over an array."""
    q = np.maximum(np.asarray(qpm, dtype=np.float64), 1e-3)
    if not q.size:
        return np.zeros(0, dtype=np.int64)
    return _BINS[np.argmin(np.abs(np.log(_BINS[None, :] / q[:, None])), axis=1)].astype(np.int64)


_TEMPO_BIN_INTS: dict[float, int] = {}


def _tempo_bins_of(qpms: list[float]) -> np.ndarray:
    """`_tempo_bins` of a list of tempos, each finite one remembered (tempo maps repeat a handful of values; the
    bins of the log-distance matrix cost more than the rest of a small piece's words)."""
    found = [_TEMPO_BIN_INTS.get(q) for q in qpms]
    missing = [i for i, b in enumerate(found) if b is None]
    if missing:
        if len(_TEMPO_BIN_INTS) > 4096:
            _TEMPO_BIN_INTS.clear()
        made = _tempo_bins(np.array([qpms[i] for i in missing], dtype=np.float64)).tolist()
        for i, b in zip(missing, made):
            found[i] = b
            if math.isfinite(qpms[i]):
                _TEMPO_BIN_INTS[qpms[i]] = b
    return np.array(found, dtype=np.int64)


def _step(beat: float, steps_per_beat: int) -> int:
    """`beats_to_steps` of one beat, in plain floats (the same operations in the same order)."""
    try:
        return math.floor(float(beat) * steps_per_beat + 0.5 + 1e-9)
    except (OverflowError, ValueError):  # not a finite beat: as numpy makes it
        return int(beats_to_steps(beat, steps_per_beat))


def _valid_ts(num, den) -> bool:
    return 1 <= int(num) < _TS_MAX and 1 <= int(den) < _TS_MAX


def _code(kind: int, value) -> int:
    return (kind << _SHIFT) | int(value)


def _ts_code(num: int, den: int) -> int:
    return (K_TS << _SHIFT) | (int(num) << 20) | int(den)


def _code_word(code: int) -> str:
    kind, value = code >> _SHIFT, code & ((1 << _SHIFT) - 1)
    if kind == K_BAR:
        return "Bar"
    if kind == K_TS:
        return f"TS_{value >> 20}/{value & (_TS_MAX - 1)}"
    return f"{_CODE_PREFIX[kind]}{value}"


_CODE_PREFIX = {K_POS: "Pos_", K_PITCH: "Pitch_", K_DUR: "Dur_", K_VEL: "Vel_", K_TEMPO: "Tempo_"}
_HEAD = 2  # a piece's MIDI words start with its first TS_ and Tempo_ words
_NO_WORDS = np.zeros(0, dtype=np.int64)  # a kind of word a piece lacks (never written to)


class _MidiWords:
    """A piece's MIDI words as arrays: the first time signature and tempo bin, then (when it has notes) for every
    kind of word its positions in the sequence and its values: Bar words at `bar_at`; TS_ codes at `ts_at`; Tempo_
    bins at `tempo_at`; Pos_ steps at `pos_at`; each note's Pitch_ at `at`, its Dur_ and Vel_ right after."""

    __slots__ = ("first_ts", "first_tempo", "length", "bar_at", "ts_at", "ts_codes", "tempo_at", "tempo", "pos_at",
                 "pos", "at", "pitch", "dur", "vel")

    def __init__(self, first_ts: tuple[int, int], first_tempo: int):
        self.first_ts, self.first_tempo, self.length = first_ts, first_tempo, _HEAD


def _compact(words: _MidiWords) -> _MidiWords:
    """`words` with its arrays in the smallest types their values are known to fit: positions in the sequence in 32
    bits (when the sequence is shorter than 2**31), Pitch_, Dur_ (at most 4096) and Tempo_ (at most 240) in 16 bits,
    Vel_ bins (fewer than 128) in 8; Pos_ steps (under a bar of 2**20 whole notes at 96 steps a beat) in 32."""
    out = _MidiWords(words.first_ts, words.first_tempo)
    out.length = words.length
    if words.length == _HEAD:
        return out
    at = np.int32 if words.length < (1 << 31) else np.int64
    for name in ("bar_at", "ts_at", "tempo_at", "pos_at", "at"):
        setattr(out, name, getattr(words, name).astype(at))
    out.ts_codes = words.ts_codes
    out.pos = words.pos.astype(np.int32)
    out.tempo = words.tempo.astype(np.int16)
    out.pitch = words.pitch.astype(np.int16, copy=False)  # 0..32767: the notes' int16 pitches, clipped at 0
    out.dur = words.dur.astype(np.int16, copy=False)
    out.vel = words.vel.astype(np.uint8, copy=False)
    return out


class _MidiTally:
    """How many times each MIDI word occurs in the pieces added: a count array per kind (values are small numbers),
    a Counter of codes for TS_ words and for values too large to count by array."""

    _ARRAY_LIMIT = 1 << 16  # larger values (a Pos_ in a bar of thousands of steps) are counted one by one

    def __init__(self, bounds: dict[int, int] | None = None):
        self.by_kind: dict[int, np.ndarray] = {}
        self.codes: Counter[int] = Counter()
        # kind -> a bound its values never reach (Dur_ is capped, Vel_ and Tempo_ are bins): counted without
        # looking for their largest value first
        self.bounds = {k: b for k, b in (bounds or {}).items() if b <= self._ARRAY_LIMIT}

    def add(self, words: _MidiWords) -> None:
        self.codes[_ts_code(*words.first_ts)] += 1
        self._count_one(K_TEMPO, words.first_tempo, 1)  # one value, no array made for it
        if words.length <= _HEAD:
            return
        self.codes.update(words.ts_codes.tolist())
        self._count_one(K_BAR, 0, len(words.bar_at))  # every Bar word is the same word
        for kind, values in ((K_TEMPO, words.tempo), (K_POS, words.pos), (K_PITCH, words.pitch), (K_DUR, words.dur),
                             (K_VEL, words.vel)):
            if not len(values):
                continue
            if kind not in self.bounds and int(values.max()) >= self._ARRAY_LIMIT:
                uniq, n = np.unique(values, return_counts=True)
                for v, c in zip(uniq.tolist(), n.tolist()):
                    self.codes[_code(kind, v)] += c
                continue
            counts = np.bincount(values)
            self._counts(kind, len(counts))[: len(counts)] += counts

    def _counts(self, kind: int, size: int) -> np.ndarray:
        """The count array of `kind`, at least `size` long."""
        have = self.by_kind.get(kind)
        if have is None or len(have) < size:
            grown = np.zeros(size, dtype=np.int64)
            if have is not None:
                grown[: len(have)] = have
            self.by_kind[kind] = have = grown
        return have

    def _count_one(self, kind: int, value: int, n: int) -> None:
        if value >= self._ARRAY_LIMIT and kind not in self.bounds:
            self.codes[_code(kind, value)] += n
        else:
            self._counts(kind, value + 1)[value] += n

    def items(self):
        """(code, count) of every word seen."""
        for kind, counts in self.by_kind.items():
            for v in np.flatnonzero(counts).tolist():
                yield _code(kind, v), int(counts[v])
        yield from self.codes.items()


@dataclass
class WordsConfig:
    source: str = "auto"  # "auto": ABC words when a piece has ABC text, else MIDI event words; or "abc" / "midi"
    max_vocab_size: int | None = None  # largest vocabulary, the four special words included; None = no limit
    min_freq: int = 1  # words seen fewer times in the corpus become <unk> (MIDI grid words are always kept)
    steps_per_beat: int = 4  # MIDI words: position/duration grid steps per quarter-note beat
    velocity_bins: int = 8  # MIDI words: Vel_0 .. Vel_{bins-1}
    max_duration_steps: int = 32  # MIDI words: longest Dur_ word; longer notes are cut to it
    header_mode: str = "musical"  # ABC words: "musical" (M L K Q R P V fields) or "all" (every field, comments)
    vocab_transpositions: int = 0  # ABC words: also fit on every tune moved by -N..+N semitones (for pitch shifts)

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ConfigError(f"--source must be one of {', '.join(SOURCES)}, not {self.source!r}")
        if self.max_vocab_size is not None and int(self.max_vocab_size) < len(SPECIALS) + 1:
            raise ConfigError(f"--max-vocab-size must be at least {len(SPECIALS) + 1}, not {self.max_vocab_size}")
        if int(self.min_freq) < 1:
            raise ConfigError(f"--min-freq must be at least 1, not {self.min_freq}")
        if not 1 <= int(self.steps_per_beat) <= 96:
            raise ConfigError(f"--steps-per-beat must be between 1 and 96, not {self.steps_per_beat}")
        if not 1 <= int(self.velocity_bins) <= 127:
            raise ConfigError(f"--velocity-bins must be between 1 and 127, not {self.velocity_bins}")
        if not 1 <= int(self.max_duration_steps) <= 4096:
            raise ConfigError(f"--max-duration-steps must be between 1 and 4096, not {self.max_duration_steps}")
        if self.header_mode not in HEADER_MODES:
            raise ConfigError(f"--header-mode must be one of {', '.join(HEADER_MODES)}, not {self.header_mode!r}")
        if not 0 <= int(self.vocab_transpositions) <= 11:
            raise ConfigError(f"--vocab-transpositions must be between 0 and 11, not {self.vocab_transpositions}")


class WordsRepresentation(Representation):
    """Word-level tokens over ABC words or MIDI event words (see the module docstring for both alphabets).

    encode: `[bos, words..., eos]`; words missing from the vocabulary become <unk>. A vocabulary fitted on ABC
    words knows only the keys and notes the corpus has, so `transpose` returns None when a shifted tune needs a
    word it lacks; `vocab_transpositions=N` fits on the tunes shifted by -N..+N as well (about 2N times slower).

    decode never raises: ids out of range, <unk>, stray <pad>/<bos> and words of the other alphabet are dropped;
    a MIDI note without Dur_/Vel_ gets one beat / velocity 80's bin; a Pos_ beyond its bar is clamped to the
    bar's last step; stray Dur_/Vel_ words are dropped; each counted in piece.meta["repairs"]. ABC sequences
    decode to a Piece with `.abc` set (notes left to the io layer), MIDI sequences to a Piece with notes.
    """

    name = "words"
    kind = "tokens"
    Config = WordsConfig
    uses_abc_text = True
    unk_id = UNK
    pad_id = PAD
    bos_id = BOS
    eos_id = EOS

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        # with source="midi" ABC tunes must be parsed into notes, so the data layer should not skip that
        self.uses_abc_text = self.config.source != "midi"
        # MIDI word codes computed while fitting, kept (weakly keyed by the note array) until the piece is encoded,
        # so `fit` then `encode` of one corpus builds each piece's words once
        self._codes_memo: dict[int, tuple[Any, np.ndarray]] = {}
        self._memo_tokens = 0
        self._words: list[str] | None = None
        self._set_words([])
        self._words = None

    # ------------------------------------------------------------------ vocabulary
    @property
    def is_fitted(self) -> bool:
        return self._words is not None

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_word)

    @property
    def words(self) -> list[str]:
        return list(self._id_to_word[len(SPECIALS) :])

    @property
    def steps_per_beat(self) -> int:
        return int(self.config.steps_per_beat)

    def _bar_steps(self, num: int, den: int) -> int:
        return max(1, int(round(num * 4 / den * self.steps_per_beat)))

    def grid_words(self, time_signatures: Iterable[tuple[int, int]] = ()) -> list[str]:
        """The MIDI words every MIDI vocabulary holds (plus TS_ words for `time_signatures`)."""
        sigs = sorted(set(COMMON_TIME_SIGNATURES) | {(n, d) for n, d in time_signatures if _valid_ts(n, d)})
        longest = max(self._bar_steps(n, d) for n, d in sigs)
        out = ["Bar"]
        out += [f"TS_{n}/{d}" for n, d in sigs]
        out += [f"Tempo_{q}" for q in TEMPO_BINS]
        out += [f"Pos_{k}" for k in range(longest)]
        out += [f"Pitch_{p}" for p in range(128)]
        out += [f"Dur_{d}" for d in range(1, int(self.config.max_duration_steps) + 1)]
        out += [f"Vel_{v}" for v in range(int(self.config.velocity_bins))]
        return out

    def piece_words(self, piece: Piece) -> tuple[list[str], str]:
        """(words, "abc" | "midi") for one piece, following `source`; DataError if the piece cannot be used."""
        units, kind = self._piece_units(piece)
        if kind == "midi":
            return [_code_word(c) for c in units.tolist()], kind
        return units, kind

    def _piece_units(self, piece: Piece, as_ids: bool = False, parts: bool = False,
                     ends: bool = False, dtype=np.int64) -> tuple[Any, str]:
        """(ABC words, "abc") or (MIDI word codes, or ids with `as_ids` (as `dtype`), or with `parts` the
        `_MidiWords` they are written from, "midi"), as `piece_words` chooses. MIDI codes or ids come between
        <bos> and <eos> with `ends`."""
        source = self.config.source
        if source == "abc" or (source == "auto" and piece.abc):
            if not piece.abc:
                where = piece.source or "piece"
                raise DataError(f"{where}: words with --source abc need ABC text, this piece has none")
            return abc_words(piece.abc, self.config.header_mode), "abc"
        if not piece.n_notes and piece.abc:
            try:
                from fractalmusic.io import ensure_notes
            except ImportError as exc:  # pragma: no cover - io is part of the package
                raise DataError(f"cannot parse ABC into notes for MIDI words: {exc}") from None
            piece = ensure_notes(piece)
        if parts:
            words = self._peek(piece)  # worked out ahead (by a reader worker), or by an earlier fit
            return (words if words is not None else self._midi_parts(piece)), "midi"
        words = self._recall(piece) if as_ids else None
        return self._write(words if words is not None else self._midi_parts(piece), as_ids, ends, dtype), "midi"

    def fit(self, pieces: Iterable[Piece]) -> "WordsRepresentation":
        counts: Counter[str] = Counter()
        used = 0
        midi = self.config.source == "midi"
        sigs: set[tuple[int, int]] = set()
        tally = _MidiTally({K_DUR: int(self.config.max_duration_steps) + 1, K_VEL: int(self.config.velocity_bins),
                            K_TEMPO: max(TEMPO_BINS) + 1, K_PITCH: 1 << 15})  # Pitch_: the notes' int16, >= 0
        for piece in pieces:
            try:
                units, kind = self._piece_units(piece, parts=True)
            except DataError:
                continue
            used += 1
            if kind == "midi":
                midi = True
                self._remember(piece, units)
                tally.add(units)
                sigs.update((int(n), int(d)) for _, n, d in piece.time_signatures if _valid_ts(n, d))
                continue
            counts.update(units)
            if self.config.vocab_transpositions:
                counts.update(self._transposed_words(units))
        for code, n in tally.items():
            counts[_code_word(code)] += n
        if not used:
            raise DataError(f"the words representation (source {self.config.source}) could use none of the pieces")
        mandatory = set(self.grid_words(sigs)) if midi else set()
        others = [w for w, c in counts.items() if c >= self.config.min_freq and w not in mandatory]
        others.sort(key=lambda w: (-counts[w], _natural_key(w)))
        if self.config.max_vocab_size is not None:
            room = int(self.config.max_vocab_size) - len(SPECIALS) - len(mandatory)
            if room < 0:
                raise ConfigError(
                    f"--max-vocab-size {self.config.max_vocab_size} is smaller than the "
                    f"{len(mandatory) + len(SPECIALS)} words MIDI words always need"
                )
            others = others[:room]
        chosen = sorted(mandatory | set(others), key=lambda w: (-counts[w], _natural_key(w)))
        self._set_words(chosen)
        return self

    def _transposed_words(self, words: list[str]) -> list[str]:
        """The words of a tune moved by every shift in -N..+N (N = vocab_transpositions), as transpose() makes
        them, so that pitch-shift augmentation finds its words in the vocabulary."""
        text, fixes = words_to_abc(words)
        if fixes:
            return []
        out: list[str] = []
        n = int(self.config.vocab_transpositions)
        for s in range(-n, n + 1):
            moved = transpose_abc(text, s) if s else None
            if moved is not None:
                out += abc_words(moved, self.config.header_mode)
        return out

    def _set_words(self, words: list[str]) -> None:
        self._words = list(words)
        self._id_to_word = list(SPECIALS) + self._words
        self._index = {w: i for i, w in enumerate(self._id_to_word)}
        n = len(self._id_to_word)
        kinds = [K_SPECIAL] * len(SPECIALS) + [K_ABC] * (n - len(SPECIALS))  # plain lists, made arrays at the end
        values = [0] * n
        self._ts: dict[int, tuple[int, int]] = {}
        self._code_index: dict[int, int] = {}  # MIDI word code -> id
        self._pitch_id = np.full(128, -1, dtype=np.int64)
        for i, w in enumerate(self._id_to_word[len(SPECIALS) :], start=len(SPECIALS)):
            m = _MIDI_WORD.match(w)
            if not m:
                continue
            g = m.groups()
            k, v = K_ABC, 0
            if w == "Bar":
                k = K_BAR
            elif g[0] is not None:
                k, v = K_POS, int(g[0])
            elif g[1] is not None:
                k, v = K_PITCH, int(g[1])
                if v < 128:
                    self._pitch_id[v] = i
            elif g[2] is not None:
                k, v = K_DUR, int(g[2])
            elif g[3] is not None:
                k, v = K_VEL, int(g[3])
            elif g[4] is not None:
                num, den = int(g[4]), int(g[5])
                if num >= 1 and den >= 1:
                    k = K_TS
                    self._ts[i] = (num, den)
            else:
                k, v = K_TEMPO, int(g[6])
            kinds[i], values[i] = k, v
            if k == K_TS:
                num, den = self._ts[i]
                if _valid_ts(num, den):
                    self._code_index[_ts_code(num, den)] = i
            elif k != K_ABC and v < (1 << _SHIFT):
                self._code_index[_code(k, v)] = i
        kind = np.array(kinds, dtype=np.int64)
        value = np.array(values, dtype=np.int64)
        self._kind = kind
        self._value = value
        # MIDI word kind -> dense value -> id table (<unk> where the vocabulary lacks the word); the last entry is
        # always <unk>, so a value past the table looks up min(value, len - 1)
        id_tables: dict[int, np.ndarray] = {}
        for k in (K_BAR, K_POS, K_PITCH, K_DUR, K_VEL, K_TEMPO):
            rows = np.flatnonzero(kind == k)
            size = int(value[rows].max()) + 1 if len(rows) else 0
            table = np.full(min(size, 1 << 20) + 1, UNK, dtype=np.int64)
            small = rows[value[rows] < len(table) - 1]  # the <unk> at the end stays
            table[value[small]] = small
            id_tables[k] = table
        # indexed by kind; kinds without a table (TS_ words, specials) have a lone <unk>
        self._id_tables = [id_tables.get(k, np.array([UNK], dtype=np.int64)) for k in range(K_TEMPO + 1)]
        self._typed_tables: dict[np.dtype, list[np.ndarray]] = {np.dtype(np.int64): self._id_tables}

    def _tables_as(self, dtype) -> list[np.ndarray]:
        """`_id_tables` as `dtype` (the cache's storage type), made once per vocabulary."""
        dtype = np.dtype(dtype)
        tables = self._typed_tables.get(dtype)
        if tables is None:
            tables = self._typed_tables[dtype] = [t.astype(dtype) for t in self._id_tables]
        return tables

    def _require_fitted(self) -> None:
        if self._words is None:
            raise FractalMusicError("the words representation has no vocabulary yet: fit it on a corpus first")

    # ------------------------------------------------------------------ MIDI words
    # A piece's MIDI words are worked out on arrays, without a loop over notes, as a `_MidiWords`: where each word
    # goes in the sequence and its value, kind by kind. `fit` counts them from there (a bincount per kind), `encode`
    # writes their ids into the sequence (one table look-up per kind), `midi_codes` their int64 codes
    # (kind << 40 | value; TS_n/d: n << 20 | d), which `midi_words` spells.
    def midi_codes(self, piece: Piece, as_ids: bool = False) -> np.ndarray:
        """The MIDI words of a piece (see `midi_words`) as int64 codes, or (`as_ids`) straight as vocabulary ids."""
        return self._write(self._midi_parts(piece), as_ids)

    def _midi_parts(self, piece: Piece) -> "_MidiWords":
        # Few array operations per piece: a piece of a few thousand notes costs more in calls than in arithmetic
        # (about 90 calls of 1-3 us each before), so steps, sums and flags are made in as few calls as the
        # results allow, and a piece of one time signature and one tempo (most files) skips the bar heads' maps.
        spb = self.steps_per_beat
        notes = piece.notes
        if np.count_nonzero(notes["is_drum"]):  # drums are left out: one gather of the records (by index: a
            notes = notes.take(np.flatnonzero(~notes["is_drum"]))  # boolean mask gathers records 6 times slower)
        n = len(notes)
        # onsets and ends on the step grid as `beats_to_steps` rounds them (x * spb + 0.5 + 1e-9, floored), in one
        # [2, n] array; truncating instead of flooring changes nothing here: onsets are clipped at 0 and a note
        # ending before step 0 gets the shortest duration either way
        steps = np.empty((2, n), dtype=np.float64)
        np.multiply(notes["onset"], spb, out=steps[0])
        np.add(notes["onset"], notes["duration"], out=steps[1])
        steps[1] *= spb
        steps += 0.5
        steps += 1e-9
        on, dur = steps.astype(np.int64)
        np.maximum(on, 0, out=on)
        dur -= on
        np.maximum(dur, 1, out=dur)  # np.clip(end - on, 1, max_duration_steps), the second half into 16 bits
        dur = np.minimum(dur, int(self.config.max_duration_steps), out=np.empty(n, dtype=np.int16))
        # Vel_ bins (fewer than 128) in 8 bits and Pitch_ values in the notes' own 16: small arrays to sort, keep
        # between fit and encode, and look up
        vel = velocity_table(int(self.config.velocity_bins), np.uint8).take(notes["velocity"], mode="clip")
        pitch = np.maximum(notes["pitch"], 0)  # what the Pitch_ words hold (their table clips at the top)
        by = on * 128
        by += np.minimum(pitch, 127)  # by onset, then pitch: read pieces come in this order already
        if n > 1 and not (by[1:] >= by[:-1]).all():
            order = np.argsort(by, kind="stable")
            on, dur, pitch, vel = on.take(order), dur.take(order), pitch.take(order), vel.take(order)

        sigs = sorted((b, int(n), int(d)) for b, n, d in piece.time_signatures if _valid_ts(n, d))
        changes = [(_step(b, spb), n, d) for b, n, d in sigs or [(0.0, 4, 4)]]
        tempos = sorted(piece.tempos) or [(0.0, 120.0)]
        if len(tempos) == 1:  # one tempo (most files): no tempo changes to place
            tempo_steps, tempo_vals = None, _tempo_bins_of([float(tempos[0][1])])
        else:
            tempo_steps = beats_to_steps([b for b, _ in tempos], spb)
            tempo_vals = _tempo_bins_of([float(q) for _, q in tempos])
        first_ts = changes[0][1:]
        words = _MidiWords(first_ts, int(tempo_vals[0]))
        if not n:
            return words
        last_on = int(on[-1])

        # bars: one run of equal bars per time signature in force (a change takes effect at the next bar start)
        runs: list[tuple[int, int, int]] = []  # (first step, bar length, index of its first bar)
        ts_changes: list[tuple[int, int]] = []  # (bar, TS_ code) where a bar restates a new time signature
        start, ts, j, n_bars = 0, first_ts, 1, 0
        while start <= last_on:
            new_ts = ts
            while j < len(changes) and changes[j][0] <= start:
                new_ts = changes[j][1:]
                j += 1
            bar_len = self._bar_steps(*new_ts)
            stop = min(changes[j][0] if j < len(changes) else last_on + 1, last_on + 1)
            count = max(1, -(-(stop - start) // bar_len))
            runs.append((start, bar_len, n_bars))
            if new_ts != ts:
                ts_changes.append((n_bars, _ts_code(*new_ts)))
            ts = new_ts
            start += bar_len * count
            n_bars += count
        if len(runs) > 1:
            run_start, run_len, run_first = (np.array(col, dtype=np.int64) for col in zip(*runs))
        if tempo_steps is None:
            tempo_now = tempo_flag = None
        else:
            if len(runs) == 1:
                bar_end = np.arange(runs[0][1], runs[0][1] * (n_bars + 1), runs[0][1])
            else:
                run_of_bar = np.repeat(np.arange(len(runs)), np.diff(np.append(run_first, n_bars)))
                bar_end = run_start[run_of_bar] + (np.arange(n_bars) - run_first[run_of_bar] + 1) * run_len[run_of_bar]
            consumed = np.searchsorted(tempo_steps, bar_end, side="left")  # tempo changes before each bar's end
            tempo_now = tempo_vals[np.maximum(consumed, 1) - 1]
            tempo_flag = np.empty(n_bars, dtype=bool)
            tempo_flag[0] = tempo_now[0] != tempo_vals[0]
            np.not_equal(tempo_now[1:], tempo_now[:-1], out=tempo_flag[1:])
            if not tempo_flag.any():
                tempo_flag = None

        # each note's bar and its step in that bar, by arithmetic within its run of equal bars
        if len(runs) == 1:
            bar_of, pos_in_bar = np.divmod(on, runs[0][1])  # the first run starts at step 0
        else:
            run = np.searchsorted(run_start, on, side="right") - 1
            bar_of, pos_in_bar = np.divmod(on - run_start[run], run_len[run])
            bar_of += run_first[run]

        # token positions: each bar is Bar [TS] [Tempo], then its notes as [Pos] Pitch Dur Vel. Before note i's
        # Pitch come the heads of its bar and of every bar before it, the words of notes 0..i-1 (3 each, +1 with a
        # Pos) and its own Pos if it has one.
        pos_flag = np.empty(n, dtype=bool)
        pos_flag[0] = True
        np.not_equal(on[1:], on[:-1], out=pos_flag[1:])
        pos_upto = np.empty(n + 1, dtype=np.int64)  # Pos words of the first k notes
        pos_upto[0] = 0
        np.cumsum(pos_flag, out=pos_upto[1:])
        ts_bars = [b for b, _ in ts_changes]
        if not ts_bars and tempo_flag is None:  # every bar's head is its Bar word alone
            head_len = None
            heads = np.arange(1, n_bars + 1)
        else:
            head_len = np.ones(n_bars, dtype=np.int64)
            head_len[ts_bars] += 1
            if tempo_flag is not None:
                head_len += tempo_flag
            heads = np.cumsum(head_len)
        at = heads.take(bar_of)
        at += np.arange(_HEAD, _HEAD + 3 * n, 3)
        at += pos_upto[1:]
        first_note = np.searchsorted(bar_of, np.arange(n_bars), side="left")  # notes in the bars before each bar
        bar_at = first_note * 3
        bar_at += pos_upto.take(first_note)
        bar_at += heads
        if head_len is None:
            bar_at += _HEAD - 1
        else:
            bar_at += _HEAD
            bar_at -= head_len

        words.length = _HEAD + int(heads[-1]) + 3 * n + int(pos_upto[-1])
        words.bar_at = bar_at
        words.ts_at = bar_at.take(ts_bars) + 1 if ts_bars else _NO_WORDS
        words.ts_codes = np.array([c for _, c in ts_changes], dtype=np.int64) if ts_bars else _NO_WORDS
        if tempo_flag is None:
            words.tempo_at = words.tempo = _NO_WORDS
        else:
            tempo_at = bar_at + 1
            tempo_at[ts_bars] += 1
            words.tempo_at = tempo_at[tempo_flag]
            words.tempo = tempo_now[tempo_flag]
        first_at = np.flatnonzero(pos_flag)
        words.pos_at = at.take(first_at)
        words.pos_at -= 1
        words.pos = pos_in_bar.take(first_at)
        words.at = at
        words.pitch = pitch
        words.dur = dur
        words.vel = vel
        return words

    def _write(self, words: "_MidiWords", as_ids: bool, ends: bool = False, dtype=np.int64) -> np.ndarray:
        """The sequence of a piece's MIDI words: their int64 codes, or (`as_ids`) their vocabulary ids as `dtype`
        (an integer type holding every id: looked up in tables of that type, so nothing is cast on the way), with
        `ends` between <bos> and <eos> (written in place: no copy to add them)."""
        if as_ids:
            tables = self._tables_as(dtype)

            def word(kind: int, values):  # values are never negative; past the kind's table: its last entry, <unk>
                return tables[kind].take(values, mode="clip")

            def ts_word(code: int) -> int:
                return self._code_index.get(code, UNK)
        else:
            def word(kind: int, values):
                return values.astype(np.int64) | (kind << _SHIFT)  # values may come in a small type (`_compact`)

            def ts_word(code: int) -> int:
                return code

        full = np.empty(words.length + 2 if ends else words.length, dtype=dtype if as_ids else np.int64)
        if ends:
            full[0], full[-1] = BOS, EOS
        out = full[1:-1] if ends else full  # a view: the words are written into `full`
        out[0] = ts_word(_ts_code(*words.first_ts))
        out[1] = word(K_TEMPO, np.array([words.first_tempo]))[0]
        if words.length == _HEAD:
            return full
        out[words.bar_at] = word(K_BAR, np.zeros(1, dtype=np.int64))[0]
        out[words.ts_at] = [ts_word(c) for c in words.ts_codes.tolist()]
        out[words.tempo_at] = word(K_TEMPO, words.tempo)
        out[words.pos_at] = word(K_POS, words.pos)
        at = words.at
        out[at] = word(K_PITCH, words.pitch)
        at = at + 1
        out[at] = word(K_DUR, words.dur)
        at += 1
        out[at] = word(K_VEL, words.vel)
        return full

    _MEMO_TOKENS = 22_000_000  # words kept between fit and encode (their arrays take about 11 bytes a word: up to
    # about 240 MB); beyond that, encode works them out again (a folder of 1,162 real MIDI files has 20 million
    # words: at 4 million encode worked four fifths of them out twice, at 14 million a third)

    def _remember(self, piece: Piece, words: "_MidiWords") -> None:
        if self._peek(piece) is words or self._memo_tokens + words.length > self._MEMO_TOKENS:
            return
        self._codes_memo[id(piece.notes)] = (weakref.ref(piece.notes), words)
        self._memo_tokens += words.length

    def _peek(self, piece: Piece) -> "_MidiWords | None":
        """The piece's remembered words, left in the memo (for `encode`)."""
        entry = self._codes_memo.get(id(piece.notes))
        return entry[1] if entry is not None and entry[0]() is piece.notes else None

    def work_ahead(self, piece: Piece) -> "_MidiWords | None":
        """What encoding `piece` needs that does not depend on the vocabulary, worked out where the piece is read
        (preparation's reader workers, in parallel) and handed to `take_ahead` in the process that fits and encodes:
        its MIDI words' arrays, in small integer types (they travel between processes: about 13 bytes a note
        instead of 45). None for a piece that gets ABC words or has no notes."""
        source = self.config.source
        if source == "abc" or (source == "auto" and piece.abc) or not piece.n_notes:
            return None
        return _compact(self._midi_parts(piece))

    def take_ahead(self, piece: Piece, work: "_MidiWords | None") -> None:
        """Keep `work_ahead`'s result for `fit` and `encode` of this very piece (its notes array)."""
        if work is not None:
            self._remember(piece, work)

    def _recall(self, piece: Piece) -> "_MidiWords | None":
        entry = self._codes_memo.pop(id(piece.notes), None)
        if entry is None:
            return None
        self._memo_tokens -= entry[1].length
        return entry[1] if entry[0]() is piece.notes else None  # the very same array, not a later one at its address

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_codes_memo"], state["_memo_tokens"] = {}, 0  # weak references do not pickle, nor need to
        return state

    def midi_words(self, piece: Piece) -> list[str]:
        """REMI-like event words of a piece's notes (drums left out) on the steps_per_beat grid."""
        return [_code_word(c) for c in self.midi_codes(piece).tolist()]

    def _decode_midi(self, ids: list[int], repairs: dict[str, int]) -> Piece:
        def count(name: str) -> None:
            repairs[name] = repairs.get(name, 0) + 1

        spb = self.steps_per_beat
        bins = int(self.config.velocity_bins)
        default_vel_bin = velocity_to_bin(80, bins)
        kind, value = self._kind, self._value
        ts = (4, 4)
        sigs: list[tuple[int, int, int]] = []
        tempos: list[tuple[int, float]] = []
        bar_start: int | None = None
        bar_len = self._bar_steps(*ts)
        pos: int | None = None
        next_ts: tuple[int, int] | None = None
        rows: list[tuple[int, int, int, int]] = []
        pending: list | None = None  # [onset, pitch, dur, vel]

        def finish() -> None:
            nonlocal pending
            if pending is None:
                return
            if pending[2] is None:
                pending[2] = spb
                count("missing_duration")
            if pending[3] is None:
                pending[3] = default_vel_bin
                count("missing_velocity")
            rows.append(tuple(pending))
            pending = None

        for t in ids:
            k = kind[t]
            if k == K_BAR:
                finish()
                if bar_start is None:
                    bar_start = 0
                else:
                    bar_start += bar_len
                if next_ts is not None:
                    ts, next_ts = next_ts, None
                    sigs.append((bar_start, *ts))
                bar_len = self._bar_steps(*ts)
                pos = None
            elif k == K_TS:
                new = self._ts[t]
                if pos is None:  # before the bar's first note: the bar itself takes it
                    ts = new
                    sigs.append((bar_start or 0, *ts))
                    bar_len = self._bar_steps(*ts)
                else:
                    next_ts = new
            elif k == K_TEMPO:
                at = (bar_start or 0) + (pos or 0)
                tempos.append((at, float(value[t])))
            elif k == K_POS:
                finish()
                if bar_start is None:
                    bar_start = 0
                    count("missing_bar")
                p = int(value[t])
                if p >= bar_len:
                    p = bar_len - 1
                    count("position_out_of_bar")
                pos = p
            elif k == K_PITCH:
                finish()
                if pos is None:
                    if bar_start is None:
                        bar_start = 0
                        count("missing_bar")
                    pos = 0
                    count("missing_position")
                pending = [bar_start + pos, int(value[t]), None, None]
            elif k == K_DUR:
                if pending is not None and pending[2] is None:
                    pending[2] = int(value[t])
                else:
                    count("stray_duration")
            elif k == K_VEL:
                if pending is not None and pending[3] is None:
                    pending[3] = min(int(value[t]), bins - 1)
                else:
                    count("stray_velocity")
            else:
                count("foreign_words")
        finish()

        notes = np.zeros(len(rows), dtype=NOTE_DTYPE)
        if rows:
            arr = np.array(rows, dtype=np.int64)
            notes["onset"] = arr[:, 0] / spb
            notes["duration"] = arr[:, 2] / spb
            notes["pitch"] = np.clip(arr[:, 1], 0, 127)
            notes["velocity"] = bin_to_velocity(arr[:, 3], bins)
        piece = Piece(notes=notes)
        time_signatures: list[tuple[float, int, int]] = []
        for step, n, d in sigs:
            if time_signatures and time_signatures[-1][0] == step / spb:
                time_signatures.pop()
            if not time_signatures or time_signatures[-1][1:] != (n, d):
                time_signatures.append((step / spb, n, d))
        if time_signatures and time_signatures[0][0] > 0:
            time_signatures.insert(0, (0.0, 4, 4))
        piece.time_signatures = time_signatures or [(0.0, 4, 4)]
        tempo_map: list[tuple[float, float]] = []
        for step, q in tempos:
            if tempo_map and tempo_map[-1][0] == step / spb:
                tempo_map.pop()
            tempo_map.append((step / spb, q))
        if tempo_map and tempo_map[0][0] > 0:
            tempo_map.insert(0, (0.0, 120.0))
        piece.tempos = tempo_map or [(0.0, 120.0)]
        return piece

    # ------------------------------------------------------------------ conversion
    def encode(self, piece: Piece) -> np.ndarray:
        return self.encode_as(piece, np.int64)

    def encode_as(self, piece: Piece, dtype: np.dtype | type) -> np.ndarray:
        """`encode(piece)` as `dtype`, an integer type that holds every id of the vocabulary (the cache's storage
        type; its largest id is then found in a small-int array, and an unsigned one needs no check for negatives).
        MIDI words' ids are looked up in tables of that type and written straight into it."""
        self._require_fitted()
        units, kind = self._piece_units(piece, as_ids=True, ends=True, dtype=dtype)
        if kind == "midi":
            return units
        index = self._index
        out = np.empty(len(units) + 2, dtype=dtype)
        out[0], out[-1] = BOS, EOS
        out[1:-1] = [index.get(w, UNK) for w in units]
        return out

    def _clean_ids(self, array, repairs: dict[str, int] | None) -> tuple[np.ndarray, bool]:
        """Ids up to the first <eos> with <pad>, <bos>, <unk> and out-of-range ids removed (and counted)."""
        arr = as_id_array(array)
        stop = np.flatnonzero(arr == EOS)
        ended = bool(len(stop))
        if ended:
            arr = arr[: stop[0]]
        if len(arr) and arr[0] == BOS:
            arr = arr[1:]
        bad = (arr < 0) | (arr >= self.vocab_size)
        special = (arr == PAD) | (arr == BOS)
        unk = arr == UNK
        if repairs is not None:
            for name, mask in (("out_of_range_ids", bad), ("misplaced_specials", special), ("unknown_tokens", unk)):
                k = int(mask.sum())
                if k:
                    repairs[name] = repairs.get(name, 0) + k
        return arr[~(bad | special | unk)], ended

    def _is_midi(self, ids: np.ndarray) -> bool:
        if self.config.source != "auto":
            return self.config.source == "midi"
        kinds = self._kind[ids]
        n_midi = int((kinds >= K_BAR).sum())
        n_abc = int((kinds == K_ABC).sum())
        if n_midi == n_abc == 0:
            return not bool((self._kind == K_ABC).any()) and bool((self._kind >= K_BAR).any())
        return n_midi > n_abc

    def decode(self, array: np.ndarray) -> Piece:
        repairs: dict[str, int] = {}
        ids, ended = self._clean_ids(array, repairs)
        if self._is_midi(ids):
            piece = self._decode_midi(ids.tolist(), repairs)
        else:
            abc_ids = ids[self._kind[ids] == K_ABC]
            if len(abc_ids) != len(ids):
                repairs["foreign_words"] = repairs.get("foreign_words", 0) + len(ids) - len(abc_ids)
            text, fixes = words_to_abc([self._id_to_word[i] for i in abc_ids.tolist()])
            for name, k in fixes.items():
                repairs[name] = repairs.get(name, 0) + k
            piece = piece_from_abc_text(text, repairs)
        piece.meta["repairs"] = repairs
        piece.meta["ended"] = ended
        return piece

    def transpose(self, array: np.ndarray, semitones: int) -> tuple[np.ndarray, int] | None:
        """ABC words: through the ABC text transposer (whole tunes; None when the tune cannot be moved or the
        moved words are not all in the vocabulary). MIDI words: Pitch_ words shifted; notes leaving 0..127 are
        dropped with their Dur_/Vel_ words (and a Pos_ left without notes), and counted."""
        arr = np.asarray(array, dtype=np.int64).reshape(-1)
        s = int(semitones)
        if s == 0:
            return arr.copy(), 0
        head = arr[:1] if len(arr) and arr[0] == BOS else arr[:0]
        tail = arr[-1:] if len(arr) > len(head) and arr[-1] == EOS else arr[:0]
        body = arr[len(head) : len(arr) - len(tail)]
        if np.any((body < len(SPECIALS)) | (body >= self.vocab_size)):
            return None
        if self._is_midi(body):
            moved = self._transpose_midi(body, s)
            if moved is None:
                return None
            ids, dropped = moved
        else:
            if np.any(self._kind[body] != K_ABC):
                return None
            text, fixes = words_to_abc([self._id_to_word[i] for i in body.tolist()])
            if fixes:
                return None
            text = transpose_abc(text, s)
            if text is None:
                return None
            words = abc_words(text, self.config.header_mode)
            got = [self._index.get(w, UNK) for w in words]
            if UNK in got:
                return None
            ids, dropped = np.asarray(got, dtype=np.int64), 0
        return np.concatenate([head, ids, tail]).astype(np.int64), dropped

    def _transpose_midi(self, body: np.ndarray, s: int) -> tuple[np.ndarray, int] | None:
        kind, value, pitch_id = self._kind, self._value, self._pitch_id
        out: list[int] = []
        dropped = 0
        skipping = False  # inside a dropped note: its Dur_/Vel_ words go too
        open_pos: int | None = None  # where in `out` the last Pos_ word sits while none of its notes is kept
        for t in body.tolist():
            k = kind[t]
            if k == K_PITCH:
                p = int(value[t]) + s
                if not 0 <= p < 128:
                    dropped += 1
                    skipping = True
                    continue
                if pitch_id[p] < 0:
                    return None
                out.append(int(pitch_id[p]))
                skipping = False
                open_pos = None
                continue
            if k == K_DUR or k == K_VEL:
                if not skipping:
                    out.append(t)
                continue
            skipping = False
            if open_pos is not None:
                del out[open_pos:]  # that Pos_ lost every note it had
            open_pos = len(out) if k == K_POS else None
            out.append(t)
        if open_pos is not None:
            del out[open_pos:]
        return np.asarray(out, dtype=np.int64), dropped

    def text_to_array(self, text: str) -> np.ndarray:
        """Primer text -> [bos, ids...]: ABC text is split into ABC words; with source "midi" (or, with "auto", a
        text made only of MIDI words) the text is whitespace-separated words. Unknown words are an error."""
        self._require_fitted()
        split = text.split()
        if self.config.source == "midi" or (
            self.config.source == "auto" and split and all(_MIDI_WORD.match(w) for w in split)
        ):
            words = split
        else:
            words = abc_words(text, self.config.header_mode)
        missing = [w for w in dict.fromkeys(words) if w not in self._index or self._index[w] < len(SPECIALS)]
        if missing:
            shown = ", ".join(repr(w) for w in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise FractalMusicError(f"the primer uses words the vocabulary does not have: {shown}{more}")
        return np.asarray([BOS] + [self._index[w] for w in words], dtype=np.int64)

    def array_to_text(self, array: np.ndarray) -> str:
        """ABC text for ABC words; space-separated words for MIDI words."""
        ids, _ = self._clean_ids(array, None)
        if self._is_midi(ids):
            return " ".join(self._id_to_word[i] for i in ids.tolist())
        words = [self._id_to_word[i] for i in ids.tolist() if self._kind[i] == K_ABC]
        return words_to_abc(words)[0]

    def words_of(self, array) -> list[str]:
        """Every id as its word ("<unk>" etc. included; ids out of range as "<?>")."""
        n = self.vocab_size
        return [self._id_to_word[i] if 0 <= i < n else "<?>" for i in as_id_array(array).tolist()]

    def ids_of(self, words: Iterable[str]) -> np.ndarray:
        """Ids of words as they are (no <bos>/<eos> added); words not in the vocabulary give <unk>."""
        return np.asarray([self._index.get(w, UNK) for w in words], dtype=np.int64)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["words"] = list(self._words) if self._words is not None else None
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        words = state.get("words")
        if words is None:
            self._set_words([])
            self._words = None
            return
        if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
            raise CheckpointError("words representation state: 'words' must be a list of non-empty strings")
        if len(set(words)) != len(words) or set(words) & set(SPECIALS):
            raise CheckpointError("words representation state: 'words' has duplicates or special words")
        self._set_words(words)
