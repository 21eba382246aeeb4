from __future__ import annotations

from dataclasses import dataclass

import pytest

from fractalmusic.config import config_from_dict, describe_options, parse_options
from fractalmusic.errors import ConfigError


@dataclass
class Gen:
    hidden_size: int = 256
    dropout: float = 0.1
    tie_weights: bool = False
    widths: tuple[int, ...] = (64, 32)
    scan_order: str = "row_major"
    max_len: int | None = None


@dataclass
class Rep:
    steps_per_beat: int = 4


def test_parse_types_flags_and_lists():
    got = parse_options(
        ["--hidden-size", "64", "--dropout=0.5", "--tie-weights", "--widths", "8,4,2", "--steps-per-beat", "2",
         "--max-len", "none"],
        {"generator": Gen, "representation": Rep},
    )
    assert got["generator"] == {"hidden_size": 64, "dropout": 0.5, "tie_weights": True, "widths": (8, 4, 2),
                                "max_len": None}
    assert got["representation"] == {"steps_per_beat": 2}
    assert parse_options(["--no-tie-weights"], {"g": Gen})["g"] == {"tie_weights": False}


def test_seed_spellings_and_aliases():
    got = parse_options(["--hidden_size", "32", "--order", "column_major"], {"g": Gen},
                        aliases={"--order": "--scan-order"})
    assert got["g"] == {"hidden_size": 32, "scan_order": "column_major"}


def test_unknown_option_suggests():
    with pytest.raises(ConfigError, match=r"no such option: --hiden-size \(did you mean '--hidden-size'\?\)"):
        parse_options(["--hiden-size", "3"], {"g": Gen})
    with pytest.raises(ConfigError, match="not a valid int"):
        parse_options(["--hidden-size", "lots"], {"g": Gen})
    with pytest.raises(ConfigError, match="needs a value"):
        parse_options(["--hidden-size"], {"g": Gen})


def test_from_dict_and_describe():
    cfg = config_from_dict(Gen, {"widths": [1, 2], "hidden_size": "8"})
    assert cfg.widths == (1, 2) and cfg.hidden_size == 8
    with pytest.raises(ConfigError, match="did you mean 'dropout'"):
        config_from_dict(Gen, {"dropuot": 0.2})
    rows = dict((o, (t, d)) for o, t, d in describe_options(Gen))
    assert rows["--widths"] == ("comma-separated list of int", "64,32")
