"""imagegen.text: frozen text encoders and the embedding cache (strings in, tensors out).

    encoder = build_text_encoder("minilm", max_length=32)
    encoding = encoder.encode(["a red circle", ""])        # TextEncoding(tokens, mask, pooled)
    cache = EmbeddingCache.for_encoder("runs/text-cache", encoder)
    cache.build(dataset_captions, encoder)
    batch = cache.lookup(["a red circle"]).to(device, torch.float32)

See docs/text.md.
"""

from imagegen.text.cache import CacheMismatchError, EmbeddingCache
from imagegen.text.encoders import (
    ALLOW_DOWNLOAD_ENV,
    BUNDLED_MINILM_NAME,
    TEXT_ENCODERS,
    CLIPTextEncoder,
    MiniLMTextEncoder,
    T5TextEncoder,
    TextEncoder,
    TextEncoderNotFoundError,
    TextEncoding,
    build_text_encoder,
    resolve_model_dir,
    weights_fingerprint,
)

__all__ = [
    "ALLOW_DOWNLOAD_ENV",
    "BUNDLED_MINILM_NAME",
    "TEXT_ENCODERS",
    "CacheMismatchError",
    "CLIPTextEncoder",
    "EmbeddingCache",
    "MiniLMTextEncoder",
    "T5TextEncoder",
    "TextEncoder",
    "TextEncoderNotFoundError",
    "TextEncoding",
    "build_text_encoder",
    "resolve_model_dir",
    "weights_fingerprint",
]
