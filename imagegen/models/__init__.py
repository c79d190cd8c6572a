"""imagegen.models: denoisers (tensors in, tensors out, never strings)."""

from imagegen.models.unet import EfficientUNet

__all__ = ["EfficientUNet"]
