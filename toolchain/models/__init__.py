"""Architecture specs → tiny, shape-faithful Hugging Face checkpoints (no hub, deterministic)."""

from .build import ModelSet, TinyModel, make_models, read_safetensors_index
from .config_input import read_config, validate_config
from .shrink import Shrink, shrink_config
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
    "validate_config",
    "read_safetensors_index",
    "select",
    "shape_of",
    "shrink_config",
]
