"""fractalmusic-transformer: the `transformer` generator (decoder-only, rotary positions, KV-cache sampling)."""
from fractalmusic_transformer.generator import TransformerConfig, TransformerGenerator

__version__ = "0.1.0"
__all__ = ["TransformerConfig", "TransformerGenerator", "__version__"]
