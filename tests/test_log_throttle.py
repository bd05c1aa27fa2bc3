"""Logs stay readable under repeated failures and hostile text (issue 17).

A failing custom classifier wrote a 9-line traceback per error (18,000 lines for 2,000 errors);
now the first three are logged in full and then one summary line a minute. `safe_call`'s source
is the caller's text and was logged as it came, line breaks and secrets included.
"""

from __future__ import annotations

import logging

import pytest

import seawall
from seawall.errors import classify as classify_module


def broken_classifier(exc: BaseException) -> seawall.ErrorCategory:
    raise RuntimeError("classifier bug")


def test_a_failing_classifier_logs_a_few_lines_for_thousands_of_errors(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        classify_module, "failures", classify_module.FailureLog(logging.getLogger("seawall"), 3)
    )
    aggregator = seawall.ErrorAggregator(classifier=broken_classifier)
    with caplog.at_level(logging.ERROR, logger="seawall"):
        for _ in range(2000):
            assert aggregator.record(ValueError("x")) is seawall.ErrorCategory.UNKNOWN
    lines = caplog.text.count("\n")
    assert len(caplog.records) <= 5, [record.getMessage()[:80] for record in caplog.records]
    assert lines < 60, lines  # three tracebacks and a notice, not 2,000
    assert aggregator.stats()["total_errors"] == 2000  # every error still counted


def test_safe_call_logs_its_source_escaped_and_redacted(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise ValueError("x")

    source = "job\nCRITICAL forged line password=hunter2"
    with caplog.at_level(logging.WARNING):
        assert seawall.safe_call(fail, fallback=1, source=source, errors=None) == 1
    (record,) = [r for r in caplog.records if "safe_call" in r.getMessage()]
    message = record.getMessage()
    assert "\n" not in message
    assert "\\nCRITICAL forged line" in message
    assert "hunter2" not in message
