"""README's one settings table names every setting any process reads."""

from __future__ import annotations

import re

from command_api.settings import CommandApiSettings
from projector.settings import ProjectorSettings
from query_api.settings import QueryApiSettings
from servicekit.auth import AuthSettings
from servicekit.hardening import HttpSettings
from tests.support.services import REPO


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("| `"))
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    settings = {
        name.upper()
        for cls in (
            CommandApiSettings,
            QueryApiSettings,
            ProjectorSettings,
            AuthSettings,
            HttpSettings,
        )
        for name in cls.model_fields
    }
    assert not settings - documented, (
        f"settings missing from README: {sorted(settings - documented)}"
    )
