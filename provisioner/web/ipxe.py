"""iPXE scripts and kernel command lines: pure rendering, no I/O beyond loading templates.

Templates are `ipxe/*.j2` from the packaged `templates/` tree, or from the operator's
`http.templates_dir` (provisioner/templating.py), and render with StrictUndefined, so a
missing value is an error, never an empty string. Nothing from a request's query reaches a
template: only values from the inventory and our own settings, and each of them passes a
strict character check first (docs/threats.md C6).

iPXE expands `${name}` anywhere on a script line, repeatedly, until none is left (its
`expand_settings` rescans the whole line after each substitution), so a literal `${uuid}`
cannot survive into the kernel command line. Talos, however, decodes the query of
`talos.config` before it substitutes its variables, so we write them percent-encoded:
`%24%7Buuid%7D` passes through iPXE untouched and reaches Talos as `${uuid}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jinja2

from provisioner.templating import TemplateLoader

__all__ = [
    "TALOS_DEFAULT_ARGS",
    "TALOS_REQUIRED_ARGS",
    "BootPlatform",
    "IpxeError",
    "IpxeRenderer",
    "config_url",
    "kernel_cmdline",
    "talos_arch",
]

# Talos's required and default kernel arguments for PXE on metal (docs/http.md "Stage two").
TALOS_REQUIRED_ARGS = ("talos.platform=metal", "slab_nomerge", "pti=on")
TALOS_DEFAULT_ARGS = (
    "init_on_alloc=1",
    "consoleblank=0",
    "nvme_core.io_timeout=4294967295",
    "printk.devkmsg=on",
    "ima_template=ima-ng",
    "ima_appraise=fix",
    "ima_hash=sha512",
)
CONSOLE_ARGS = {"amd64": ("console=ttyS0", "console=tty0"), "arm64": ("console=ttyAMA0",)}
MAX_CMDLINE = 4096  # Talos's documented kernel command line limit
EFI_INITRD_NAME = "initramfs.xz"
RESERVED_KEYS = frozenset({"talos.config", "talos.platform", "initrd", "talos.experimental.wipe"})
"""Arguments only we set: an inventory entry cannot redirect the config download."""
INSTALL_WIPE = "talos.experimental.wipe=system"
"""On every install boot. Talos loads a config from an installed disk's STATE before it looks
at `talos.config=` (its LoadConfig), so a reprovisioned machine would boot its old config
and never fetch the new one. Talos runs its wipeDisks phase before loading any config
(v1alpha1_sequencer.go), so with this argument it resets the system disk's partitions, then
fetches. An install script only goes to a machine inside its provisioning window, and the
install overwrites the system disk anyway, so a first install loses nothing."""
DASHBOARD_OFF = "talos.dashboard.disabled=1"

# One kernel argument: printable ASCII without the characters iPXE or a shell would act on.
_ARG_RE = re.compile(r"^[A-Za-z0-9_.,:/=+@%?&~\-\[\]]{1,512}$")
_SAFE_RE = re.compile(r"^[A-Za-z0-9._:-]{1,253}$")
# iPXE ${buildarch} values (iPXE src/arch/*) to Talos architectures.
_BUILDARCH = {"x86_64": "amd64", "i386": "amd64", "arm64": "arm64", "amd64": "amd64"}


class IpxeError(ValueError):
    """A value cannot be put into a script safely (bad kernel argument, bad name)."""


@dataclass(frozen=True, slots=True)
class BootPlatform:
    """What the firmware told us about itself in the chain URL."""

    arch: str = "amd64"
    efi: bool = False

    @classmethod
    def from_query(cls, buildarch: str | None, platform: str | None) -> BootPlatform:
        """From iPXE's `${buildarch}` and `${platform}` (pcbios, efi); unknown values default."""
        return cls(arch=talos_arch(buildarch), efi=(platform or "").strip().lower() == "efi")


def talos_arch(buildarch: str | None) -> str:
    """Talos's name for an iPXE build architecture (default amd64)."""
    return _BUILDARCH.get((buildarch or "").strip().lower(), "amd64")


def _safe(value: object) -> str:
    """Template filter: a name or word allowed verbatim in a script, else IpxeError."""
    text = str(value)
    if not _SAFE_RE.fullmatch(text):
        msg = f"unsafe value for an iPXE script: {text!r}"
        raise IpxeError(msg)
    return text


def check_arg(arg: str) -> str:
    """`arg` if it is safe as one kernel argument, else IpxeError."""
    if not _ARG_RE.fullmatch(arg) or "&&" in arg:  # iPXE: "&&" chains commands
        msg = f"unsafe kernel argument: {arg!r}"
        raise IpxeError(msg)
    return arg


def config_url(base_url: str, token: str, *, code: bool = False) -> str:
    """The talos.config URL: token, and Talos's `${uuid}`/`${mac}` hidden from iPXE.

    With `code`, also `code=${code}`: Talos waits until META key DownloadURLCode exists
    (its dashboard's config-URL screen writes it) and substitutes it before the fetch
    (siderolabs/talos internal/app/machined/pkg/runtime/v1alpha1/platform/metal/url).
    """
    var_uuid = quote("${uuid}", safe="")
    var_mac = quote("${mac}", safe="")
    url = f"{base_url}/config?t={quote(token, safe='')}&uuid={var_uuid}&mac={var_mac}"
    if code:
        url += f"&code={quote('${code}', safe='')}"
    return url


def kernel_cmdline(
    *,
    arch: str,
    efi: bool,
    asset_cmdline: str,
    extra: Iterable[Sequence[str] | None],
    talos_config: str,
    telemetry: Sequence[str] = (),
    needs_dashboard: bool = False,
) -> str:
    """The kernel command line of a Talos PXE boot.

    Order: `initrd=` (EFI stub only), Talos's required and default arguments, the console,
    the asset set's own cmdline, then each extra list (cluster, then machine), then the
    telemetry arguments (`talos.events.sink=`, `talos.logging.kernel=`: ours, so reserved
    while set), then `talos.experimental.wipe=system` (INSTALL_WIPE), then `talos.config`.
    Exact duplicates are dropped; every argument is checked.
    """
    reserved = RESERVED_KEYS | {arg.split("=", 1)[0] for arg in telemetry}
    args: list[str] = [f"initrd={EFI_INITRD_NAME}"] if efi else []
    args += TALOS_REQUIRED_ARGS
    args += TALOS_DEFAULT_ARGS
    args += CONSOLE_ARGS.get(arch, ())
    for group in (asset_cmdline.split(), *extra):
        if group is None:
            continue
        if isinstance(group, str) or not all(isinstance(a, str) for a in group):
            msg = "kernelArgs must be a list of strings"
            raise IpxeError(msg)
        for arg in group:
            if arg.split("=", 1)[0] in reserved:
                msg = f"kernel argument {arg!r} is set by the provisioner"
                raise IpxeError(msg)
        args += group
    args += telemetry
    args.append(INSTALL_WIPE)
    if needs_dashboard and DASHBOARD_OFF in args:
        # The operator types the per-boot code on Talos's dashboard; without it the
        # machine would wait for `${code}` forever.
        msg = f"configCode needs Talos's dashboard, but {DASHBOARD_OFF} is on the command line"
        raise IpxeError(msg)
    args.append(f"talos.config={talos_config}")
    seen: set[str] = set()
    out: list[str] = []
    for arg in args:
        check_arg(arg)
        if arg not in seen:
            seen.add(arg)
            out.append(arg)
    line = " ".join(out)
    if len(line) > MAX_CMDLINE:
        msg = f"kernel command line is {len(line)} bytes, more than {MAX_CMDLINE}"
        raise IpxeError(msg)
    return line


class IpxeRenderer:
    """Renders the `ipxe/` templates strictly; `templates_dir` is `http.templates_dir`."""

    def __init__(
        self, base_url: str, templates_dir: Path | None = None, *, telemetry_args: Sequence[str] = ()
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.telemetry_args = tuple(telemetry_args)
        self._env = jinja2.Environment(
            loader=TemplateLoader("ipxe", templates_dir),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - iPXE scripts, not HTML; values pass _safe/check_arg
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters["safe_word"] = _safe

    def _render(self, name: str, **values: object) -> str:
        text = self._env.get_template(name).render(base_url=self.base_url, **values)
        if "\r" in text:
            msg = "carriage return in a rendered script"
            raise IpxeError(msg)
        return text

    def boot(self) -> str:
        """Stage one: the fixed /boot.ipxe."""
        return self._render("boot.ipxe.j2")

    def install(
        self,
        *,
        machine: str,
        asset_set: str,
        platform: BootPlatform,
        asset_cmdline: str,
        extra_args: Iterable[Sequence[str] | None],
        token: str,
        code: bool = False,
    ) -> str:
        """Stage two for a machine being provisioned: kernel, initramfs, command line."""
        cmdline = kernel_cmdline(
            arch=platform.arch,
            efi=platform.efi,
            asset_cmdline=asset_cmdline,
            extra=extra_args,
            talos_config=config_url(self.base_url, token, code=code),
            telemetry=self.telemetry_args,
            needs_dashboard=code,
        )
        return self._render(
            "install.ipxe.j2",
            machine=machine,
            asset_set=_safe(asset_set),
            cmdline=cmdline,
            efi=platform.efi,
            initrd_name=EFI_INITRD_NAME,
        )

    def disk(self, *, machine: str, mode: str) -> str:
        """Stage two for an installed machine: leave iPXE (`exit`) or `sanboot` the disk."""
        return self._render("disk.ipxe.j2", machine=machine, sanboot=mode == "sanboot")

    def hold(self, *, machine: str, reason: str) -> str:
        """Stage two for a known machine with nothing to do: back to the firmware."""
        return self._render("hold.ipxe.j2", machine=machine, reason=reason)

    def discovery(self, *, asset_set: str, platform: BootPlatform, asset_cmdline: str) -> str:
        """Stage two for an unknown machine when the discovery image is configured.

        The image's own command line only: no talos.config, no token, nothing secret.
        """
        args = [f"initrd={EFI_INITRD_NAME}"] if platform.efi else []
        args += asset_cmdline.split()
        cmdline = " ".join(check_arg(arg) for arg in args)
        return self._render(
            "discovery.ipxe.j2",
            asset_set=_safe(asset_set),
            cmdline=cmdline,
            efi=platform.efi,
            initrd_name=EFI_INITRD_NAME,
        )

    def unknown(self) -> str:
        """Stage two for a machine the inventory does not know: recorded, then exit."""
        return self._render("unknown.ipxe.j2")

    def error(self, *, machine: str, reason: str) -> str:
        """Stage two when we cannot boot a known machine (no asset set, bad argument)."""
        return self._render("error.ipxe.j2", machine=machine, reason=reason)
