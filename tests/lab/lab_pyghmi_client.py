"""Drive a lab BMC with pyghmi's ``Command`` client (run inside the lab namespace).

Usage: python pyghmi_client.py PORT ACTION...; password in LAB_BMC_PASSWORD. Actions:
power-on, power-off, softoff, reset, bootdev-pxe, status, bootdev. Prints one JSON per action.
"""

from __future__ import annotations

import json
import os
import sys

from pyghmi.ipmi import command


def main() -> None:
    """Run the actions in order."""
    port = int(sys.argv[1])
    ipmi = command.Command(
        bmc="127.0.0.1", port=port, userid="admin", password=os.environ["LAB_BMC_PASSWORD"]
    )
    for action in sys.argv[2:]:
        if action == "status":
            result = ipmi.get_power()
        elif action == "bootdev":
            result = ipmi.get_bootdev()
        elif action == "bootdev-pxe":
            result = ipmi.set_bootdev("network")
        elif action in {"power-on", "power-off"}:
            result = ipmi.set_power(action.removeprefix("power-"), wait=True)
        else:
            result = ipmi.set_power(action)
        sys.stdout.write(json.dumps({action: result}) + "\n")
    ipmi.ipmi_session.logout()


if __name__ == "__main__":
    main()
