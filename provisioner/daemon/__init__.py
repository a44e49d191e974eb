"""The composition root: builds every part of the daemon, wires them, runs them.

Only `provisioner serve` (provisioner/cli/serve.py) imports this package; subsystems
declare the ports they need (small Protocols next to their consumer) and receive them
through their constructors. See docs/architecture.md.
"""

from provisioner.daemon.build import Daemon, Part, build_daemon
from provisioner.daemon.run import run_daemon

__all__ = ["Daemon", "Part", "build_daemon", "run_daemon"]
