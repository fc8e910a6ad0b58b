"""Fail unless the active environment holds exactly what requirements.lock pins, and pip finds it consistent.

Run with the environment's own Python after installing from the lock:
    python .ci/check_lock.py            # after `pip install -c requirements.lock -e '.[test]'`: all of it
    python .ci/check_lock.py --subset   # after the runtime install `pip install -c requirements.lock -e .`
Compares `pip freeze --all` (less pip itself and the editable project) with the lock's `name==version` lines.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def pins(lines: list[str]) -> dict[str, Version]:
    """`name==version` lines as {canonical name: version}; comments, options and blanks are skipped."""
    return {canonicalize_name(m[1]): Version(m[2]) for m in map(PIN.match, lines) if m}


def installed() -> dict[str, Version]:
    """What pip reports as installed here, less pip itself and editable installs (the project)."""
    command = [sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable", "--exclude", "pip"]
    return pins(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines())


def differences(have: dict[str, Version], locked: dict[str, Version], subset: bool) -> list[str]:
    """One line per distribution installed but not locked, locked but missing, or at another version."""
    lines = [f"not in the lock: {name}=={have[name]}" for name in sorted(have.keys() - locked.keys())]
    lines += [f"{name}: installed {have[name]}, locked {locked[name]}"
              for name in sorted(have.keys() & locked.keys()) if have[name] != locked[name]]
    if not subset:
        lines += [f"missing: {name}=={locked[name]}" for name in sorted(locked.keys() - have.keys())]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", action="store_true", help="the environment may hold part of the lock")
    args = parser.parse_args()
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True,
                           check=False)
    if check.returncode != 0:
        print(f"lock check FAILED: pip check:\n{check.stdout}{check.stderr}", end="")
        return 1
    have, locked = installed(), pins(LOCK.read_text().splitlines())
    problems = differences(have, locked, args.subset)
    if problems:
        print(f"lock check FAILED: the environment differs from {LOCK.name}:", *problems, sep="\n  ")
        print(f"install with `pip install -c {LOCK.name} ...`, or regenerate the lock with .ci/lock")
        return 1
    scope = f"{len(have)} of {len(locked)}" if args.subset else f"all {len(locked)}"
    print(f"lock check passed: pip check clean; {scope} distributions pinned in {LOCK.name} installed at "
          "their locked versions, nothing else")
    return 0


if __name__ == "__main__":
    sys.exit(main())
