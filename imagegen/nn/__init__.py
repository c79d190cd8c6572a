"""imagegen.nn: generic layers (embeddings, attention, resnet blocks, resampling).

They know nothing of text or diffusion: a "context" is any sequence of vectors with a mask, an
"embedding" any conditioning vector.
"""

from imagegen.nn.attention import CrossAttention, SelfAttention
from imagegen.nn.embeddings import TimestepEmbedding, sinusoidal_embedding
from imagegen.nn.norm import group_norm
from imagegen.nn.resample import Downsample, Upsample
from imagegen.nn.resnet import ResnetBlock

__all__ = [
    "CrossAttention",
    "Downsample",
    "ResnetBlock",
    "SelfAttention",
    "TimestepEmbedding",
    "Upsample",
    "group_norm",
    "sinusoidal_embedding",
]
