"""The README is the manual: generated parts in sync, every command and exit code documented."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from kubeload.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(ROOT / "hack"))

from update_readme import render  # noqa: E402


def test_spec_reference_is_in_sync() -> None:
    assert render(README) == README, "README spec reference drifted from the models: run `make crd`"


def test_every_subcommand_is_documented() -> None:
    sub = next(a for a in _parser()._actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"`kubeload {name}" in README, f"kubeload {name} is not in the README"


def test_every_exit_code_is_documented() -> None:
    from kubeload import cli

    for code in (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_INVALID, cli.EXIT_THRESHOLDS):
        assert re.search(rf"^\| {code} \|", README, re.M), f"exit code {code} is not in the README"


def test_every_make_target_with_help_is_documented() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^([a-z-]+):.*## ", makefile, re.M):
        if target in ("help", "system-deps", "lint", "typecheck", "control-plane", "bench-engine",
                      "bench-redis", "clean"):
            continue
        assert f"make {target}" in README, f"make {target} is not in the README"
