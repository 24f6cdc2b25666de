"""``--from-config`` input checks accept every real config and every spec this project ships."""

from __future__ import annotations

import pytest

from tests.models.configs import REAL_CONFIGS
from toolchain.errors import ModelError
from toolchain.models.config_input import validate_config
from toolchain.models.shrink import shrink_config
from toolchain.models.spec import load_specs

SPECS = load_specs()


@pytest.mark.parametrize("name", sorted(REAL_CONFIGS))
def test_real_configs_pass(name: str) -> None:
    validate_config(REAL_CONFIGS[name])


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_spec_config_passes(name: str) -> None:
    spec = SPECS[name]
    validate_config({**spec.config, **dict.fromkeys(spec.config_null)})


def test_shrink_validates_before_it_shrinks() -> None:
    bad = {**REAL_CONFIGS["llama-3-8b"], "num_key_value_heads": "8"}
    with pytest.raises(ModelError, match='num_key_value_heads = "8"'):
        shrink_config(bad, SPECS)
