"""Timings of the local deploy cycle, printed after the integration run."""

from __future__ import annotations

import pytest

CLI_TIMINGS: list[tuple[str, float]] = []
"""(step, seconds) of each CDK CLI run, filled by the integration test's fixtures."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CLI_TIMINGS:
        return
    terminalreporter.section("local deploy cycle: CDK CLI timings")
    for step, seconds in CLI_TIMINGS:
        terminalreporter.write_line(f"{seconds:6.1f} s  {step}")
    terminalreporter.write_line(f"{sum(s for _, s in CLI_TIMINGS):6.1f} s  total in the CLI")
