"""imagegen: Imagen-style cascaded text-to-image diffusion, with a GAN baseline behind the same interface.

    import imagegen
    images = imagegen.generate("a red circle above a blue square", guidance_scale=5.0)

Heavy libraries (torch, diffusers, transformers) are imported lazily, on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["generate", "load_pipeline", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("generate", "load_pipeline"):
        from imagegen import pipelines

        return getattr(pipelines, name)
    raise AttributeError(f"module 'imagegen' has no attribute {name!r}")
