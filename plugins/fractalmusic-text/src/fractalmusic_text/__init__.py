"""fractalmusic-text: the `text` representation (plain UTF-8 text as characters or words) for fractalmusic."""
from fractalmusic_text.representation import TextConfig, TextRepresentation

__version__ = "0.1.0"
__all__ = ["TextConfig", "TextRepresentation", "__version__"]
