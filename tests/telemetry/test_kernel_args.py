"""The telemetry kernel arguments in the iPXE install script."""

from __future__ import annotations

import pytest

from provisioner.telemetry.settings import TelemetrySettings, kernel_args
from provisioner.web.ipxe import IpxeError, kernel_cmdline


def test_kernel_args_take_the_http_host_or_the_public_host_for_wildcards() -> None:
    assert kernel_args(TelemetrySettings(), "10.77.0.1", "10.77.0.1") == (
        "talos.events.sink=10.77.0.1:4002",
        "talos.logging.kernel=tcp://10.77.0.1:4003",
    )
    wild = TelemetrySettings(events_listen="0.0.0.0:5002", logs_listen="192.0.2.9:5003")
    assert kernel_args(wild, "0.0.0.0", "prov.example") == (
        "talos.events.sink=prov.example:5002",
        "talos.logging.kernel=tcp://192.0.2.9:5003",
    )
    assert kernel_args(TelemetrySettings(enabled=False), "10.77.0.1", "10.77.0.1") == ()


def test_telemetry_args_are_reserved_while_set() -> None:
    telemetry = kernel_args(TelemetrySettings(), "10.77.0.1", "10.77.0.1")
    line = kernel_cmdline(
        arch="amd64", efi=False, asset_cmdline="", extra=[], talos_config="u", telemetry=telemetry
    )
    assert line.endswith(
        " talos.events.sink=10.77.0.1:4002 talos.logging.kernel=tcp://10.77.0.1:4003"
        " talos.experimental.wipe=system talos.config=u"
    )
    with pytest.raises(IpxeError, match="set by the provisioner"):
        kernel_cmdline(
            arch="amd64",
            efi=False,
            asset_cmdline="",
            extra=[["talos.events.sink=203.0.113.1:1"]],
            talos_config="u",
            telemetry=telemetry,
        )
    # with telemetry off, an operator may point the node elsewhere
    line = kernel_cmdline(
        arch="amd64", efi=False, asset_cmdline="", extra=[["talos.events.sink=192.0.2.1:1"]], talos_config="u"
    )
    assert "talos.events.sink=192.0.2.1:1" in line
