"""imagegen.pipelines: everything that generates, behind one call signature (`base.Pipeline`).

base.py           the Pipeline protocol and every argument check, written once
diffusion.py      DiffusionPipeline: one diffusion run (text-to-image, or super-resolution of a given image)
cascade.py        CascadePipeline: a cascade folder (imagegen.cascade's disk format), stage after stage
gan.py            GANPipeline: a GAN run, one generator pass
fast_sampling.py  the denoiser a pipeline samples with: eager, compiled or CUDA-graph replayed
loading.py        load_pipeline(path) and generate(...): which pipeline a folder is, loaded once
"""

from imagegen.pipelines.base import Pipeline
from imagegen.pipelines.cascade import CascadePipeline
from imagegen.pipelines.diffusion import DiffusionPipeline
from imagegen.pipelines.gan import GANPipeline
from imagegen.pipelines.loading import generate, load_pipeline, open_checkpoint

__all__ = [
    "CascadePipeline",
    "DiffusionPipeline",
    "GANPipeline",
    "Pipeline",
    "generate",
    "load_pipeline",
    "open_checkpoint",
]
