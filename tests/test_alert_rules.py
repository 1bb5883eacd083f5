"""deploy/prometheus/alerts.yml, checked by Prometheus' own promtool (Debian package
`prometheus`, installed by .ci/run): the rules parse, and their unit tests (alerts_test.yml)
see each alert fire on the series that should page and stay quiet on the others."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

RULES = ROOT / "deploy" / "prometheus"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs the Debian package prometheus")
        pytest.skip("promtool is not installed here (apt-get install prometheus); CI runs it")
    return found


def test_promtool_check_rules_accepts_the_rules():
    result = subprocess.run(
        [_promtool(), "check", "rules", "alerts.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_promtool_unit_tests_fire_and_stay_quiet():
    result = subprocess.run(
        [_promtool(), "test", "rules", "alerts_test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
