"""Text-only causal LMs (Qwen2, Llama, Mistral, ...): names are already canonical."""

from merge_models.adapters.base import Adapter

ADAPTER = Adapter(
    family="causal_lm",
    model_types=(),
    language_prefixes=(("model.", "model."), ("lm_head.", "lm_head.")),
    is_vlm=False,
)
