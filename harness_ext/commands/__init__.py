"""Sub-commands of `merged-vlm`, one module per group."""
