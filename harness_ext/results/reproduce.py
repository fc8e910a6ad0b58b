"""`merged-vlm reproduce BUNDLE`: re-run a submission bundle's evaluation on the inputs it names.

Local checkpoints are found by the path the bundle names (`models/tiny-world/vlm`) in the folder the command
runs from, else among the files shipped with merged-vlm; each must have the content digest the bundle records,
checked before anything runs. The harness then runs on a copy of the bundle's recipe that names the found
folders (a temporary file: nothing written for others holds this machine's paths).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from shutil import which
from typing import Any

import yaml

from harness_ext.results.errors import ResultsError
from harness_ext.results.submit import (
    BUNDLE_RECIPE,
    LM_EVAL_TASKS,
    needs_include,
    output_arguments,
    recipe_refs,
)
from merge_models.checkpoint import open_checkpoint
from merge_models import shipped
from merge_models.recipe import ModelRef

DIGESTS = ("content_sha256", "header_sha256")  # the parts of a local identity that hold on another machine


def reproduce(bundle: Path, out: Path, where: Path) -> int:
    """Check the bundle's inputs, run its harness command from `where` into `out`; the harness's exit status."""
    submission = _submission(bundle)
    spec = submission.get("reproduce") or {}
    harness, args = spec.get("harness"), list(spec.get("arguments") or [])
    if harness not in ("lmms_eval", "lm_eval") or not args:
        raise ResultsError(f"{bundle / 'results.json'}: no reproduce command recorded; write the bundle again with "
                           "`merged-vlm submit`")
    with tempfile.TemporaryDirectory(prefix="merged-vlm-reproduce-") as folder:
        if f"recipe={BUNDLE_RECIPE}" in ",".join(args):
            recipe = resolved_recipe(bundle, submission.get("models") or [], where)
            path = Path(folder) / BUNDLE_RECIPE
            path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
            args = [a.replace(f"recipe={BUNDLE_RECIPE}", f"recipe={path}", 1) if a.startswith(f"recipe={BUNDLE_RECIPE}")
                    else a for a in args]
        tasks = args[args.index("--tasks") + 1].split(",") if "--tasks" in args else []
        if needs_include(harness, tasks):
            args += ["--include_path", subprocess.run([sys.executable, "-c", LM_EVAL_TASKS], capture_output=True,
                                                      text=True, check=True).stdout.strip()]
        command = [_executable(harness), *args, *output_arguments(str(out))]
        print(f"reproducing {submission.get('variant')} from {bundle}: inputs checked; running {harness} into {out}",
              flush=True)
        return subprocess.run(command, cwd=where, check=False).returncode


def resolved_recipe(bundle: Path, models: list[dict[str, Any]], where: Path) -> dict[str, Any]:
    """The bundle's recipe with each local checkpoint replaced by the folder found for it, after checking that
    folder's content digest against the one recorded."""
    try:
        recipe = yaml.safe_load((bundle / BUNDLE_RECIPE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ResultsError(f"{bundle / BUNDLE_RECIPE}: cannot be read ({type(exc).__name__}); write the bundle "
                           "again with `merged-vlm submit`") from None
    recorded = {m.get("role"): m for m in models}
    for role, ref in recipe_refs(recipe):
        identity = (recorded.get(role) or {}).get("identity") or {}
        if identity.get("source") != "local":
            continue
        folder = locate_checkpoint(ref["model"], where)
        if folder is None:
            raise ResultsError(f"{BUNDLE_RECIPE} {role}: no checkpoint folder {ref['model']} in {where} or among "
                               "merged-vlm's shipped files; run from the checkout that holds it")
        found = open_checkpoint(ModelRef(model=str(folder)), role, bool(recipe.get("allow_pickle"))).identity
        for key in DIGESTS:
            if key in identity and found.get(key) != identity[key]:
                raise ResultsError(f"{BUNDLE_RECIPE} {role}: {ref['model']} has {key} {found.get(key, 'none')[:12]}, "
                                   f"the bundle was made with {identity[key][:12]}; put the checkpoint the bundle "
                                   "names there")
        ref["model"] = str(folder)
    return recipe


def locate_checkpoint(name: str, where: Path) -> Path | None:
    """The folder a bundle's local checkpoint name means here: under `where`, else shipped with merged-vlm."""
    for folder in (where / name, shipped.root() / name):
        if folder.is_dir():
            return folder.resolve()
    return None


def _submission(bundle: Path) -> dict[str, Any]:
    try:
        return json.loads((bundle / "results.json").read_text(encoding="utf-8"))["merged_vlm_submission"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ResultsError(f"{bundle}: not a submission bundle (no readable results.json from `merged-vlm submit`); "
                           "name the folder `submit --out` wrote") from None


def _executable(harness: str) -> str:
    beside = Path(sys.executable).parent / harness
    return str(beside) if beside.is_file() else which(harness) or harness
