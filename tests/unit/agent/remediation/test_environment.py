"""The environment a script gets: named variables only, whatever the agent's holds."""

from __future__ import annotations

from pathlib import Path

from sonde.agent.remediation.environment import (
    MINIMAL_PATH,
    parameter_variable,
    script_environment,
    windows_environment,
)
from sonde.catalog.manifest import ParameterValue


def test_values_become_sonde_param_variables() -> None:
    values: dict[str, ParameterValue] = {
        "service_name": "cups",
        "days": 7,
        "force": True,
        "dry_run": False,
    }
    environment = script_environment(values, mark="m", home=Path("/home/helpdesk"))
    assert environment == {
        "PATH": MINIMAL_PATH,
        "HOME": "/home/helpdesk",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "SONDE_RUN_MARK": "m",
        "SONDE_PARAM_SERVICE_NAME": "cups",
        "SONDE_PARAM_DAYS": "7",
        "SONDE_PARAM_FORCE": "1",
        "SONDE_DRY_RUN": "0",
    }
    assert parameter_variable("max_age_days") == "SONDE_PARAM_MAX_AGE_DAYS"


def test_windows_keeps_the_system_folders_and_nothing_else() -> None:
    agent = {
        "SYSTEMROOT": r"C:\Windows",
        "Path": r"C:\Windows\system32;C:\Windows",
        "ComSpec": r"C:\Windows\system32\cmd.exe",
        "AWS_SECRET_ACCESS_KEY": "must-not-leak",
        "HTTPS_PROXY": "http://proxy:3128",
        "PSExecutionPolicyPreference": "Unrestricted",
    }
    system = windows_environment(agent)
    assert system == {
        "SystemRoot": r"C:\Windows",
        "ComSpec": r"C:\Windows\system32\cmd.exe",
        "PATH": r"C:\Windows\system32;C:\Windows",
    }
    environment = script_environment({"dry_run": True}, mark="m", system=system)
    assert environment == {**system, "SONDE_RUN_MARK": "m", "SONDE_DRY_RUN": "1"}
