"""The inventory document kinds (Cluster, Machine) as strict pydantic models.

Keys are camelCase as operators write them (`talosVersion`, `installDisk`); an unknown
key is an error (a typo must not silently drop a setting). MACs and UUIDs are normalised
here, at the boundary.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from provisioner.model import Role, normalize_mac, normalize_uuid

__all__ = ["BmcSpec", "ClusterSpec", "CniSpec", "MachineSpec", "Taint"]


def _mac(value: object) -> str:
    return normalize_mac(str(value))


Mac = Annotated[str, BeforeValidator(_mac)]
"""A MAC in any common spelling, stored as aa:bb:cc:dd:ee:ff."""

_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        msg = "must be lower-case letters, digits, '-' or '.', 1-63 characters (a DNS label)"
        raise ValueError(msg)
    return value


HostnameMode = Literal["static", "stable"]
"""static: the machine's hostname (default its name); stable: Talos's HostnameConfig
``auto: stable`` (a name derived from the machine's identity, as talosctl generates)."""


def _str_map(value: Any) -> Any:  # noqa: ANN401 - pydantic before-validator
    # YAML reads sysctl values such as 1024 as numbers; Talos wants strings.
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return value


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class CniSpec(_Doc):
    """Which CNI Talos installs: its default (flannel), none, or custom manifests."""

    name: Literal["flannel", "none", "custom"] = "flannel"
    urls: tuple[str, ...] = ()


class Taint(_Doc):
    """A Kubernetes node taint."""

    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class BmcSpec(_Doc):
    """How to reach the machine's BMC.

    `password` may be `env:NAME`, `file:PATH`, `enc:<ciphertext>` (what `inventory export`
    writes for inline passwords) or the password itself.
    """

    driver: Literal["ipmi", "redfish", "manual", "fake"]
    address: str = ""
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    username: str = ""
    password: str = Field(default="", repr=False)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return value.strip()


class ClusterSpec(_Doc):
    """`kind: Cluster`: one Talos cluster."""

    kind: Literal["Cluster"]
    name: str
    talos_version: str = Field(alias="talosVersion")
    kubernetes_version: str = Field(alias="kubernetesVersion")
    endpoint: str
    asset_set: str | None = Field(default=None, alias="assetSet")
    install_disk: str | None = Field(default=None, alias="installDisk")
    dns_domain: str = Field(default="cluster.local", alias="dnsDomain")
    pod_subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = Field(
        default=(), alias="podSubnets"
    )
    service_subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = Field(
        default=(), alias="serviceSubnets"
    )
    cni: CniSpec = CniSpec()
    allow_scheduling_on_control_planes: bool = Field(default=False, alias="allowSchedulingOnControlPlanes")
    kernel_args: tuple[str, ...] = Field(default=(), alias="kernelArgs")
    # A per-boot code the operator types on the machine's console (Talos `${code}`,
    # META DownloadURLCode); the config is refused without it (docs/threats.md H1).
    config_code: bool = Field(default=False, alias="configCode")
    cert_sans: tuple[str, ...] = Field(default=(), alias="certSANs")
    registry_mirrors: dict[str, tuple[str, ...]] = Field(default_factory=dict, alias="registryMirrors")
    # Talos generate options (generate.With...): install image, sysctls, local API server
    # port, hostname mode, discovery, KubePrism port (0 turns KubePrism off).
    install_image: str | None = Field(default=None, alias="installImage")
    sysctls: dict[str, str] = Field(default_factory=dict)
    local_api_server_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        default=None, alias="localAPIServerPort"
    )
    hostname_mode: HostnameMode = Field(default="static", alias="hostnameMode")
    discovery: bool = True
    telemetry: bool = True
    """Append EventSinkConfig/KmsgLogConfig pointing at the provisioner to machine configs."""
    kube_prism_port: Annotated[int, Field(ge=0, le=65535)] = Field(default=7445, alias="kubePrismPort")
    config_patches: tuple[Any, ...] = Field(default=(), alias="configPatches")
    boot_from_disk: Literal["exit", "sanboot"] = Field(default="exit", alias="bootFromDisk")
    description: str = ""

    _name = field_validator("name")(_check_name)
    _sysctls = field_validator("sysctls", mode="before")(_str_map)

    @field_validator("talos_version", "kubernetes_version", mode="before")
    @classmethod
    def _version(cls, value: object) -> str:
        # YAML reads an unquoted 1.13 as a float: report the shape, not the type.
        value = str(value)
        if not _VERSION.fullmatch(value):
            msg = "must be a version like v1.13.0"
            raise ValueError(msg)
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not re.fullmatch(r"https://[^/\s:]+(:\d{1,5})?/?", value):
            msg = "must be an https:// URL with a host and optional port, e.g. https://10.0.0.10:6443"
            raise ValueError(msg)
        return value.rstrip("/")


class MachineSpec(_Doc):
    """`kind: Machine`: one server."""

    kind: Literal["Machine"]
    name: str
    cluster: str | None = None
    role: Role = Role.WORKER
    macs: tuple[Mac, ...]
    uuid: str | None = None
    serial: str | None = None
    ip: ipaddress.IPv4Address | None = None
    hostname: str | None = None
    install_disk: str | None = Field(default=None, alias="installDisk")
    install_image: str | None = Field(default=None, alias="installImage")
    hostname_mode: HostnameMode | None = Field(default=None, alias="hostnameMode")
    arch: Literal["amd64", "arm64"] = "amd64"
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    sysctls: dict[str, str] = Field(default_factory=dict)
    kernel_args: tuple[str, ...] = Field(default=(), alias="kernelArgs")
    cert_sans: tuple[str, ...] = Field(default=(), alias="certSANs")
    interfaces: tuple[dict[str, Any], ...] = ()
    nameservers: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    config_patches: tuple[Any, ...] = Field(default=(), alias="configPatches")
    boot_from_disk: Literal["exit", "sanboot"] | None = Field(default=None, alias="bootFromDisk")
    pxe: bool = True
    asset_set: str | None = Field(default=None, alias="assetSet")
    bmc: BmcSpec | None = None
    description: str = ""

    _name = field_validator("name")(_check_name)

    @field_validator("macs", mode="before")
    @classmethod
    def _macs(cls, value: Any) -> Any:  # noqa: ANN401 - pydantic before-validator
        return [value] if isinstance(value, str) else value

    @field_validator("macs")
    @classmethod
    def _some_mac(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # An after-validator (not min_length) so that a bad MAC is reported once, alone.
        if not value:
            msg = "at least one MAC is required"
            raise ValueError(msg)
        return value

    @field_validator("uuid", mode="before")
    @classmethod
    def _uuid(cls, value: Any) -> Any:  # noqa: ANN401 - pydantic before-validator
        return normalize_uuid(str(value)) if value not in (None, "") else None

    @field_validator("serial", "hostname", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:  # noqa: ANN401 - pydantic before-validator
        return None if value in (None, "") else str(value)

    _str_maps = field_validator("labels", "sysctls", mode="before")(_str_map)
