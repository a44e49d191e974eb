"""``python -m lab.bmcd``: run the virtual BMC of one lab VM (or of several) in this process.

``lab up`` starts one process per VM, as real BMCs are independent: pyghmi keeps its
session state in class attributes shared by every BMC of a process, and with several
BMCs in one process concurrent clients of different BMCs were seen to stall.

Started by ``lab up`` inside the lab namespace; the password comes from the environment
variable LAB_BMC_PASSWORD (never the command line). QEMU processes it starts stay up if
it dies (they have pid files; ``lab down`` stops them).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from pyghmi.ipmi import bmc as pyghmi_bmc

from lab.bmc import LabBmc, VmSettings
from lab.machines import lab_machines


def main() -> int:
    """Parse arguments, start the BMCs, serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m lab.bmcd")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--machines", type=int, required=True)
    parser.add_argument("--firmware", required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--memory", type=int, default=256, help="MiB per VM")
    parser.add_argument("--only", type=int, help="serve only the BMC of machine number ONLY (0-based)")
    args = parser.parse_args()
    password = os.environ.get("LAB_BMC_PASSWORD", "")
    if not password:
        sys.stderr.write("LAB_BMC_PASSWORD is not set\n")
        return 2
    # pyghmi keeps a non-daemon I/O thread: leave at once on SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    vm = VmSettings(firmware=args.firmware, memory_mib=args.memory)
    machines = lab_machines(args.machines)
    if args.only is not None:
        machines = [machines[args.only]]
    bmcs = [LabBmc(machine, args.state_dir, password, vm, args.address) for machine in machines]
    sys.stderr.write(f"lab bmcd: {len(bmcs)} BMCs on {args.address}\n")
    sys.stderr.flush()
    pyghmi_bmc.Bmc.listen(timeout=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
