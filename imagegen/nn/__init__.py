"""imagegen.nn: generic layers (embeddings, attention, resnet blocks, resampling).

They know nothing of text or diffusion: a "context" is any sequence of vectors with a mask, an
"embedding" any conditioning vector.
"""

from imagegen.nn.attention import ATTENTION_BACKENDS, CrossAttention, SelfAttention, set_attention_backend
from imagegen.nn.embeddings import TimestepEmbedding, sinusoidal_embedding
from imagegen.nn.norm import group_norm
from imagegen.nn.resample import Downsample, Upsample
from imagegen.nn.resnet import ResnetBlock

__all__ = [
    "ATTENTION_BACKENDS",
    "CrossAttention",
    "Downsample",
    "ResnetBlock",
    "SelfAttention",
    "TimestepEmbedding",
    "Upsample",
    "group_norm",
    "set_attention_backend",
    "sinusoidal_embedding",
]
