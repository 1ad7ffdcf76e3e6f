import re

import pytest
from omegaconf import OmegaConf

from credit import get_credit, known_credit_methods, register_credit
from credit.group_relative import GroupRelativeConfig
from credit.sgcd import SGCDConfig


def test_builtin_methods_registered_with_their_configs():
    assert {"grpo", "sgcd"} <= set(known_credit_methods())
    assert get_credit("grpo").config_class is GroupRelativeConfig
    assert get_credit("sgcd").config_class is SGCDConfig


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown credit method 'ppo'") as info:
        get_credit("ppo")
    for name in known_credit_methods():
        assert name in str(info.value)


def test_unknown_option_lists_known_ones():
    with pytest.raises(ValueError, match="unknown options \\['std'\\].*scale_by_std"):
        get_credit("grpo").make_config({"std": True})
    assert get_credit("grpo").make_config({"scale_by_std": True}).scale_by_std
    nested = "unknown options ['weights.c']; known under weights: ['cap', 'gamma']"
    with pytest.raises(ValueError, match=re.escape(nested)):
        get_credit("sgcd").make_config({"weights": {"c": 3}})


def test_nested_options_build_typed_configs():
    config = get_credit("sgcd").make_config({"weights": {"cap": None}, "weighting": "uniform"})
    assert isinstance(config, SGCDConfig) and config.weights.cap is None
    assert config.weighting == "uniform" and config.weights.gamma == 1.0
    with pytest.raises(ValueError, match="cap > 1"):  # the dataclass's own check still runs
        get_credit("sgcd").make_config({"weights": {"cap": 0.5}})


def test_duplicate_name_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_credit("grpo", GroupRelativeConfig)(lambda groups, teacher, config: None)


@pytest.mark.parametrize(
    "options",
    [{"teacher_context": "oracle"}, {"weighting": "random"}],
)
def test_sgcd_config_rejects_unknown_switches(options):
    with pytest.raises(ValueError, match="must be one of"):
        SGCDConfig(**options)


@pytest.mark.parametrize("name", ["grpo", "sgcd"])
def test_configs_are_hydra_structured_configs(name):
    # configs/credit/<name>.yaml is built from these dataclasses.
    config_class = get_credit(name).config_class
    structured = OmegaConf.structured(config_class)
    assert OmegaConf.to_object(structured) == config_class()
