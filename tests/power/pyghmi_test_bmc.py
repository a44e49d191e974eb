"""A pyghmi-based BMC for the power tests, run as a subprocess (like virtualbmc does).

It answers RMCP+ the way pyghmi's `ipmi.bmc.Bmc` does (cipher suite 3 whatever the
client proposes), keeps a power state and the raw boot flags, and appends every request
it acts on to a JSON-lines log so tests can prove what the BMC was told.

Usage: BMC_PASSWORD=... python pyghmi_test_bmc.py --port N --log FILE [--hang FILE]
       [--ipmi15-only] [--cipher0] [--no-cycle]

--hang FILE   while FILE exists, Get Chassis Status blocks (a BMC hung mid-call)
--ipmi15-only channel auth capabilities without IPMI 2.0 (a downgrade to 1.5)
--cipher0     Open Session Response selecting RAKP-none/no integrity/no privacy
--no-cycle    chassis power cycle not implemented (the base class answers 0xCC)
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

from pyghmi.ipmi import bmc
from pyghmi.ipmi.private import serversession


class TestBmc(bmc.Bmc):
    """Power state + boot flags, every action logged."""

    def __init__(self, authdata: dict[str, str], port: int, log: Path, hang: Path | None) -> None:
        super().__init__(authdata, port=port, address="127.0.0.1")
        self.power = "off"
        self.boot_flags = [0, 0, 0, 0, 0]
        self.log = log
        self.hang = hang

    def record(self, **entry: Any) -> None:
        with self.log.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    def get_power_state(self) -> str:
        while self.hang is not None and self.hang.exists():
            time.sleep(0.05)
        self.record(op="status", power=self.power)
        return self.power

    def power_on(self) -> None:
        self.record(op="on")
        self.power = "on"

    def power_off(self) -> None:
        self.record(op="off")
        self.power = "off"

    def power_shutdown(self) -> None:
        self.record(op="soft_off")
        self.power = "off"

    def power_reset(self) -> None:
        self.record(op="reset")

    def power_cycle(self) -> None:
        self.record(op="cycle")
        self.power = "on"

    def set_system_boot_options(self, request: dict[str, Any], session: Any) -> None:
        data = list(request["data"])
        self.record(op="bootopt", data=data)
        if data and data[0] == 5:  # boot flags: keep them verbatim for bootparam get 5
            self.boot_flags = (data[1:] + [0] * 5)[:5]
        super().set_system_boot_options(request, session)

    def set_boot_device(self, bootdevice: str) -> None:
        self.record(op="bootdev", device=bootdevice)

    def get_system_boot_options(self, request: dict[str, Any], session: Any) -> None:
        if request["data"][0] == 5:
            session.send_ipmi_response(data=[1, 5, *self.boot_flags])
        else:
            super().get_system_boot_options(request, session)


def _open_session_cipher0(self: Any, request: bytes) -> bytes:
    """An Open Session Response that selects cipher suite 0 (auth, integrity, privacy none)."""
    self.clientsessionid = request[4:8]
    self.managedsessionid = os.urandom(4)
    self.privlevel = 4
    return (
        bytearray([request[0], 0, self.privlevel, 0])
        + self.clientsessionid
        + self.managedsessionid
        + bytearray([0, 0, 0, 8, 0, 0, 0, 0, 1, 0, 0, 8, 0, 0, 0, 0, 2, 0, 0, 8, 0, 0, 0, 0])
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--hang", type=Path)
    parser.add_argument("--ipmi15-only", action="store_true")
    parser.add_argument("--cipher0", action="store_true")
    parser.add_argument("--no-cycle", action="store_true")
    args = parser.parse_args()
    password = os.environ["BMC_PASSWORD"]  # not in argv: /proc/PID/cmdline is world-readable

    log: Path = args.log
    original_rakp1 = serversession.ServerSession._got_rakp1

    def logged_rakp1(self: Any, data: bytes) -> Any:
        with log.open("a") as out:
            out.write(json.dumps({"op": "rakp1"}) + "\n")
        return original_rakp1(self, data)

    # Patching here changes only this test BMC process, never the client under test.
    serversession.ServerSession._got_rakp1 = logged_rakp1
    if args.cipher0:
        serversession.ServerSession.create_open_session_response = _open_session_cipher0
    cls: type[TestBmc] = TestBmc
    if args.no_cycle:
        cls = type("NoCycleBmc", (TestBmc,), {"power_cycle": bmc.Bmc.power_cycle})
    server = cls({"admin": password}, args.port, log, args.hang)
    if args.ipmi15_only:
        # Get Channel Auth Capabilities: MD5 only, no IPMI 2.0 bit, no 2.0 channel support.
        server.authcap = struct.pack("BBBBBBBBB", 0, 1, 0b00000100, 0b00000100, 0, 0, 0, 0, 0)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    server.listen(timeout=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
