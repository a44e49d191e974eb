"""Talos version contracts: which config shape a given Talos release expects.

Talos keeps generating configs for older releases on request ("version contract"); every
shape change is a switch on the contract.  We support the contracts whose shapes we can
reproduce byte for byte and whose schemas we vendor: 1.13 (one ``v1alpha1`` document plus
a ``HostnameConfig``) and 1.14 (a slim ``v1alpha1`` document plus one ``kind:`` document
per concern).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SUPPORTED_CONTRACTS", "UnsupportedContractError", "VersionContract"]


class UnsupportedContractError(ValueError):
    """The requested Talos version contract is outside the supported range."""


_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:-[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True, slots=True, order=True)
class VersionContract:
    """A Talos ``major.minor`` release whose config format we generate."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> VersionContract:
        """Parse ``1.13``, ``v1.13`` or ``v1.13.4``; reject unsupported releases."""
        match = _VERSION.match(text.strip())
        if not match:
            msg = f"invalid Talos version {text!r}: expected MAJOR.MINOR such as 1.13"
            raise UnsupportedContractError(msg)
        contract = cls(int(match.group(1)), int(match.group(2)))
        if contract not in SUPPORTED_CONTRACTS:
            supported = ", ".join(str(c) for c in SUPPORTED_CONTRACTS)
            msg = f"Talos version contract {contract} is not supported (supported: {supported})"
            raise UnsupportedContractError(msg)
        return contract

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, major: int, minor: int) -> bool:
        """Whether this contract is ``major.minor`` or newer."""
        return (self.major, self.minor) >= (major, minor)

    @property
    def multidoc_kubernetes(self) -> bool:
        """1.14 moved Kubernetes, discovery, host DNS, install and sysctls to ``kind:`` docs."""
        return self.at_least(1, 14)


SUPPORTED_CONTRACTS = (VersionContract(1, 13), VersionContract(1, 14))
