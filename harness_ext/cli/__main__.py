"""`python -m harness_ext.cli`: the `merged-vlm` command line."""

from harness_ext.cli import main

main()
