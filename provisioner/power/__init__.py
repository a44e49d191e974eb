"""BMC power control: one `PowerDriver` protocol, IPMI/Redfish/manual/fake back ends.

See docs/power.md for what each driver supports and how to diagnose a BMC.
"""

from provisioner.power.base import (
    BmcAuthFailed,
    BmcCredentials,
    BmcInsecure,
    BmcProtocolError,
    BmcTimeout,
    BmcUnreachable,
    BmcUnsupported,
    BootDevice,
    PowerAction,
    PowerDriver,
    PowerError,
    PowerState,
    Secret,
)
from provisioner.power.fake import FakePowerDriver
from provisioner.power.manual import manual_instruction
from provisioner.power.registry import DRIVER_NAMES, make_driver
from provisioner.power.service import PowerResult, PowerService

__all__ = [
    "DRIVER_NAMES",
    "BmcAuthFailed",
    "BmcCredentials",
    "BmcInsecure",
    "BmcProtocolError",
    "BmcTimeout",
    "BmcUnreachable",
    "BmcUnsupported",
    "BootDevice",
    "FakePowerDriver",
    "PowerAction",
    "PowerDriver",
    "PowerError",
    "PowerResult",
    "PowerService",
    "PowerState",
    "Secret",
    "make_driver",
    "manual_instruction",
]
