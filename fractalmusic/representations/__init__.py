"""Representations (tokenizers). Built-ins: abc (characters), words (musical words), pianoroll (grid)."""
from fractalmusic.representations.base import Representation, RepresentationSpec

__all__ = ["Representation", "RepresentationSpec"]
