"""avatar_trainer: DreamBooth-style LoRA trainer for SD 1.x / SDXL, shipped to the Vertex job.

Kept import-light on purpose: `python -m avatar_trainer --help` must not import torch.
"""

__version__ = "0.1.0"
