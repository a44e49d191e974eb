"""Talos version contracts: which config shape a given Talos release expects.

Talos keeps generating configs for older releases on request (its ``VersionContract``,
``pkg/machinery/config/contract.go``); every shape change is a feature switched on by a
"contract is newer than X" comparison, and the generator asks the contract, never the
version string.  The predicates below carry Talos's names for the features whose switch
point falls inside the supported range, so the generator reads like Talos's.

Supported: every release Talos keeps stability goldens for that we reproduce byte for
byte, 1.10 through 1.15.  A newer release is generated with the newest known contract
(:func:`resolve` says so, the caller reports it); an older one is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "NEWEST",
    "OLDEST",
    "SUPPORTED_CONTRACTS",
    "ResolvedContract",
    "UnsupportedContractError",
    "VersionContract",
    "resolve",
]


class UnsupportedContractError(ValueError):
    """The requested Talos version contract is outside the supported range."""


_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+][0-9A-Za-z.-]+)?$")


@dataclass(frozen=True, slots=True, order=True)
class VersionContract:
    """A Talos ``major.minor`` release whose config format we generate."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> VersionContract:
        """Parse ``1.13``, ``v1.13`` or ``v1.13.4``; reject releases outside the supported range."""
        contract = cls.parse_any(text)
        if contract not in SUPPORTED_CONTRACTS:
            supported = ", ".join(str(c) for c in SUPPORTED_CONTRACTS)
            msg = f"Talos version contract {contract} is not supported (supported: {supported})"
            raise UnsupportedContractError(msg)
        return contract

    @classmethod
    def parse_any(cls, text: str) -> VersionContract:
        """Parse a version without checking it is supported."""
        match = _VERSION.match(str(text).strip())
        if not match:
            msg = f"invalid Talos version {text!r}: expected MAJOR.MINOR such as 1.13"
            raise UnsupportedContractError(msg)
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, major: int, minor: int) -> bool:
        """Whether this contract is ``major.minor`` or newer."""
        return (self.major, self.minor) >= (major, minor)

    def greater(self, major: int, minor: int) -> bool:
        """Talos's ``contract.Greater(TalosVersionX_Y)``: strictly newer than ``major.minor``."""
        return (self.major, self.minor) > (major, minor)

    # Features, named as in Talos's contract.go; each is "newer than" a release.

    @property
    def hide_rbac_and_key_usage(self) -> bool:
        """``machine.features.rbac``/``apidCheckExtKeyUsage`` are no longer written (> 1.11)."""
        return self.greater(1, 11)

    @property
    def hide_disable_psp(self) -> bool:
        """``cluster.apiServer.disablePodSecurityPolicy`` is no longer written (> 1.11)."""
        return self.greater(1, 11)

    @property
    def populate_cluster_sans_from_endpoint(self) -> bool:
        """The endpoint's host is added to the API server's SANs (up to 1.11)."""
        return not self.greater(1, 11)

    @property
    def grub_use_uki_cmdline_default(self) -> bool:
        """``machine.install.grubUseUKICmdline: true`` is written (> 1.11)."""
        return self.greater(1, 11)

    @property
    def multidoc_network_config(self) -> bool:
        """HostnameConfig and RegistryMirrorConfig documents replace v1alpha1 fields (> 1.11)."""
        return self.greater(1, 11)

    @property
    def kubespan_multidoc_config(self) -> bool:
        """The empty legacy ``machine.network: {}`` is no longer written (> 1.12)."""
        return self.greater(1, 12)

    @property
    def multidoc_kubernetes(self) -> bool:
        """Kubernetes, discovery, host DNS, install and sysctls move to ``kind:`` docs (> 1.13)."""
        return self.greater(1, 13)


OLDEST = VersionContract(1, 10)
NEWEST = VersionContract(1, 15)
SUPPORTED_CONTRACTS = tuple(VersionContract(1, minor) for minor in range(OLDEST.minor, NEWEST.minor + 1))


@dataclass(frozen=True, slots=True)
class ResolvedContract:
    """The contract a Talos version is generated with, and a note when it is not its own."""

    contract: VersionContract
    note: str = ""


def resolve(version: str) -> ResolvedContract:
    """The contract to generate ``version`` with.

    A release newer than the newest known one is generated with the newest known contract,
    as a talosctl of that release would for its own predecessor: Talos keeps new releases
    able to read older contracts' configs.  ``note`` says so.  Older than the oldest
    supported, or not a version: UnsupportedContractError.
    """
    contract = VersionContract.parse_any(version)
    if contract > NEWEST:
        note = (
            f"Talos {version} is newer than the newest known version contract {NEWEST}: "
            f"generating the {NEWEST} contract"
        )
        return ResolvedContract(NEWEST, note)
    if contract < OLDEST:
        msg = f"Talos {version} is older than the oldest supported version contract {OLDEST}"
        raise UnsupportedContractError(msg)
    return ResolvedContract(contract)
