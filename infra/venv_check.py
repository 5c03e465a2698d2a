"""Check that the venv satisfies pyproject.toml (dependencies and the `test` extra).

`make venv` installs the exact versions of requirements.lock, then the project with
`--no-deps`; nothing there notices a dependency added to pyproject.toml but not to the
lock. This does: it reads the installed project's requirements and exits 1, naming each
missing or out-of-range package, when the lock is stale (`make lock` refreshes it).
"""

from __future__ import annotations

import importlib.metadata as metadata
import sys

from packaging.requirements import Requirement

PROJECT = "actionitems"
EXTRAS = ("test",)


def unsatisfied(project: str = PROJECT, extras: tuple[str, ...] = EXTRAS) -> list[str]:
    """The requirements of `project` (with `extras`) that the installed packages do not meet."""
    problems: list[str] = []
    for line in metadata.requires(project) or []:
        req = Requirement(line)
        if req.marker is not None and not any(
            req.marker.evaluate({"extra": extra}) for extra in ("", *extras)
        ):
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req} (not installed)")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            problems.append(f"{req} (installed {installed})")
    return problems


def main() -> int:
    problems = unsatisfied()
    if problems:
        print(
            "venv: requirements.lock does not satisfy pyproject.toml; the venv was left as "
            "installed. Run `make lock` (then `make venv`) and commit requirements.lock:",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
