"""Software versions and hardware of a run: read from what the harness recorded, or captured here.

lm-eval records its version, transformers' and an environment report (torch, CPU, GPUs). lmms-eval
records only its own version, so for its runs the rest is captured when the run is ingested (on the
machine that ran it, in the usual run-then-ingest flow) and the record says so (`*_source: ingest`).
A run that carries `capture()`'s output under `merged_vlm.environment` is recorded as measured.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from typing import Any

from harness_ext.results.record import Environment, Hardware

PACKAGES = {"lmms_eval": "lmms-eval", "lm_eval": "lm-eval", "transformers": "transformers", "torch": "torch"}


def capture() -> dict[str, Any]:
    """This process's package versions and machine, as a JSON-ready dict (Environment's fields)."""
    versions: dict[str, str | None] = {name: _version(dist) for name, dist in PACKAGES.items()}
    versions["python"] = platform.python_version()
    hardware = Hardware(platform=platform.platform(), cpu=_cpu_model(), cpu_count=os.cpu_count(),
                        ram_gb=_ram_gb(), gpus=_gpus())
    return {"versions": versions, "versions_source": "run", "hardware": hardware.model_dump(),
            "hardware_source": "run"}


def for_lmms_eval(results: dict[str, Any]) -> Environment:
    """The environment of an lmms-eval run: recorded by the run when it carries one, else captured now."""
    recorded = (results.get("merged_vlm") or {}).get("environment")
    if recorded:
        return Environment.model_validate(recorded)
    here = capture()
    here["versions"]["lmms_eval"] = _lmms_eval_version(results.get("lmms_eval_version")) or here["versions"][
        "lmms_eval"]
    return Environment.model_validate({**here, "versions_source": "ingest", "hardware_source": "ingest"})


def for_lm_eval(results: dict[str, Any]) -> Environment:
    """The environment of an lm-eval run, from its version fields and `pretty_env_info` report."""
    report = results.get("pretty_env_info") or ""
    if not report:
        here = capture()
        here["versions"].update(lm_eval=results.get("lm_eval_version"),
                                transformers=results.get("transformers_version"))
        return Environment.model_validate({**here, "versions_source": "ingest", "hardware_source": "ingest"})
    torch_version = _field(report, "PyTorch version")
    gpus = _field(report, "GPU models and configuration")
    cpu_count = _field(report, "CPU(s)")
    versions = {"lmms_eval": None, "lm_eval": results.get("lm_eval_version"),
                "transformers": results.get("transformers_version"), "torch": torch_version,
                "python": (_field(report, "Python version") or "").split(" ")[0] or None}
    hardware = Hardware(platform=_field(report, "Python platform"), cpu=_field(report, "Model name"),
                        cpu_count=int(cpu_count) if cpu_count and cpu_count.isdigit() else None,
                        gpus=[] if not gpus or gpus.startswith("Could not") else [gpus])
    return Environment(versions=versions, versions_source="run", hardware=hardware, hardware_source="run")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _lmms_eval_version(recorded: Any) -> str | None:
    """lmms-eval writes a release number, or `branch@commit` of a git checkout it finds near the run."""
    return recorded if isinstance(recorded, str) and re.fullmatch(r"\d+(\.\d+)*\S*", recorded) else None


def _field(report: str, name: str) -> str | None:
    match = re.search(rf"^{re.escape(name)}:\s*(.+)$", report, re.MULTILINE)
    return match.group(1).strip() if match else None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _ram_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[str]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
