"""InternVL as transformers supports it natively (the `-hf` checkpoints, model_type `internvl`).

The remote-code `internvl_chat` checkpoints are not supported: their language models
(InternLM2 fused `wqkv`) do not share names or shapes with a Hugging Face causal LM.
"""

from merge_models.adapters.base import Adapter
from merge_models.adapters.llava import LLAVA_LANGUAGE, LLAVA_MEMORY, LLAVA_VISION

ADAPTER = Adapter(
    family="internvl",
    model_types=("internvl",),
    language_prefixes=LLAVA_LANGUAGE,
    vision_prefixes=LLAVA_VISION,
    memory_prefixes=LLAVA_MEMORY,
)
