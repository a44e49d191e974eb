"""The virtual lab: an isolated network, QEMU VMs that network-boot, one virtual BMC each.

See lab/README.md. Entry point: ``python -m lab up|status|down``.
"""
