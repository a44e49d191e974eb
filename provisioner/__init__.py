"""provisioner: turns bare-metal servers into Talos Linux nodes (DHCP, TFTP, iPXE/HTTP, BMC power, trustd)."""

__all__: list[str] = []
