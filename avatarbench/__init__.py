"""avatarbench: one harness to train, render and score 3D Gaussian Splatting avatars.

Layout (see docs/architecture.md):

- ``avatarbench.data``        cameras, subjects, dataset loaders, synthetic subjects
- ``avatarbench.bodymodels``  FLAME / SMPL-X layers and their procedural stand-ins
- ``avatarbench.render``      the one Gaussian rasterizer (gsplat on CUDA, pure torch on CPU)
- ``avatarbench.metrics``     image and geometry metrics, evaluation protocols
- ``avatarbench.engine``      method protocol, registry, training loop, checkpoints
- ``avatarbench.results``     run folders, tables, plots
- ``avatarbench.methods``     one package per avatar method (``methods/`` in the repo)
"""

__version__ = "0.1.0"
