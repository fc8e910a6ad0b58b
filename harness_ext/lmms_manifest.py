"""The `lmms_eval.models` entry point: names merged_vlm's classes without importing them."""

from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(
    model_id="merged_vlm",
    chat_class_path="harness_ext.lmms_model.MergedVLMChat",
    simple_class_path="harness_ext.lmms_model.MergedVLMSimple",
)
