"""Every transformers internal merged-vlm relies on, written for transformers 5.23.

Loading a merge without writing it: `from_pretrained(None, config=..., state_dict=...)` builds the model
class the Auto class would pick for `config` (`auto_factory._get_model_class`, private) and takes every
weight from the state dict, whose values transformers materialises with `tensor[...]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import transformers as T

from harness_ext.compat import Target, Upstream

UPSTREAM = Upstream("transformers", "5.23.0", "harness_ext/compat/transformers.py")
MODEL_CLASS = Target(UPSTREAM, "transformers.models.auto.auto_factory", "_get_model_class",
                     ("config", "model_mapping"))
FROM_PRETRAINED = Target(UPSTREAM, "transformers", "PreTrainedModel.from_pretrained",
                         ("pretrained_model_name_or_path",))
TARGETS = (MODEL_CLASS, FROM_PRETRAINED)


def from_streamed(auto_class: Any, config: Any, state_dict: dict[str, Any], path: Path,
                  generation: bool, **kwargs: Any) -> T.PreTrainedModel:
    """from_pretrained of `config` (the model at `path`) with every weight taken from `state_dict`, so
    no weight file is read; generation settings from `path` when `generation`, else from the config."""
    if kwargs.get("trust_remote_code") and auto_class.__name__ in (getattr(config, "auto_map", None) or {}):
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        model_class = get_class_from_dynamic_module(config.auto_map[auto_class.__name__], str(path))
    else:
        model_class = MODEL_CLASS.resolve()(config, auto_class._model_mapping)  # what Auto*.from_config uses
    settings = None
    if generation and (path / "generation_config.json").is_file():
        settings = T.GenerationConfig.from_pretrained(path)
    # transformers takes a state dict only without a model path (it would read the path's weights)
    return model_class.from_pretrained(None, config=config, state_dict=state_dict, generation_config=settings,
                                       **kwargs)
