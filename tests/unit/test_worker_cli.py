"""`kubeload worker` refuses bad options with exit code 2 before touching Redis."""

from __future__ import annotations

import pytest

from kubeload.cli import EXIT_INVALID, main


@pytest.mark.parametrize("argv", [
    ["worker", "--redis-url", "redis://127.0.0.1:1/0"],  # no --run
    ["worker", "--run", "ns/name/run"],  # no --redis-url
    ["worker", "--redis-url", "redis://127.0.0.1:1/0", "--run", "ns/name/run", "--processes", "-1"],
    ["worker", "--redis-url", "redis://127.0.0.1:1/0", "--run", "ns/name/run", "--index", "x"],
])
def test_bad_options_exit_2(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KUBELOAD_REDIS_URL", "KUBELOAD_RUN", "JOB_COMPLETION_INDEX", "KUBELOAD_PROCESSES"):
        monkeypatch.delenv(name, raising=False)
    assert main(argv) == EXIT_INVALID


def test_unknown_engine_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--engine", "httpx"])
    assert exit_info.value.code == EXIT_INVALID
