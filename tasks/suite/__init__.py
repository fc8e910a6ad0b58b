"""The lmms-eval task suite: task and group YAMLs in this folder, with their hooks.

One module per benchmark holds its process_docs (which reads the published data through
mvlm_tasks.sources), doc_to_visual, doc_to_text and process_results; `metrics` aggregates the
per-sample records that `common.record` builds.
"""
