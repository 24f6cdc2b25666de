"""Architecture specs → tiny, shape-faithful Hugging Face checkpoints (no hub, deterministic)."""

from .build import ModelSet, TinyModel, make_models, read_safetensors_index
from .shrink import Shrink, read_config, shrink_config
from .spec import ArchSpec, ModelShape, load_specs, select, shape_of

__all__ = [
    "ArchSpec",
    "ModelSet",
    "ModelShape",
    "Shrink",
    "TinyModel",
    "load_specs",
    "make_models",
    "read_config",
    "read_safetensors_index",
    "select",
    "shape_of",
    "shrink_config",
]
