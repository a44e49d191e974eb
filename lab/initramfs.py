"""Build the lab node's initramfs at run time from what this host has installed.

Contents: busybox-static, the NIC and ACPI-button modules of the installed Debian kernel
(with their dependencies from modules.dep, in load order), curl and openssl with their
shared libraries (from ldd), the openssl config, and the agent (lab/agent/). Output is a
gzip'd newc cpio (lab.cpio).
"""

from __future__ import annotations

import gzip
import re
import stat
import subprocess
import tempfile
from pathlib import Path

from lab.cpio import CpioEntry, newc_archive

__all__ = ["KernelNotFoundError", "build_initramfs", "find_kernel", "module_load_order"]

AGENT_DIR = Path(__file__).resolve().parent / "agent"
# Drivers the lab VMs need: virtio-net (the default NIC), e1000, the ACPI power button
# and evdev (so a soft power-off reaches busybox acpid).
# virtio_blk and FAT (vfat + code pages) so that the agent can install to the VM's disk.
WANTED_MODULES = (
    "virtio_pci", "virtio_net", "e1000", "button", "evdev",
    "virtio_blk", "vfat", "nls_cp437", "nls_iso8859_1", "nls_ascii",
)  # fmt: skip
BINARIES = (
    "/usr/bin/curl", "/usr/bin/openssl", "/usr/sbin/sfdisk", "/usr/bin/extlinux", "/usr/sbin/mkfs.fat",
)  # fmt: skip
# The BIOS boot code the agent writes to the disk's first sector (syslinux-common): it boots
# the GPT partition marked "legacy BIOS bootable", where extlinux is installed.
GPTMBR = Path("/usr/lib/syslinux/mbr/gptmbr.bin")
# The UEFI boot loader: a GRUB EFI binary made on the host (grub-efi-amd64-bin) whose
# built-in config finds the BOOT partition by a marker file and reads its grub.cfg.
GRUB_EMBEDDED_CFG = "search --no-floppy --file /lab-boot --set=root\nconfigfile ($root)/grub.cfg\n"
GRUB_MODULES = "part_gpt fat search search_fs_file linux configfile normal echo gzio"
OPENSSL_CNF = Path("/usr/lib/ssl/openssl.cnf")
_DIR = stat.S_IFDIR | 0o755
_FILE = stat.S_IFREG | 0o644
_EXEC = stat.S_IFREG | 0o755


class KernelNotFoundError(FileNotFoundError):
    """No /boot/vmlinuz-* (install linux-image-amd64)."""


def find_kernel(boot: Path = Path("/boot")) -> tuple[Path, str]:
    """Return the newest installed kernel image and its release string."""

    def version_key(path: Path) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", path.name)]

    kernels = sorted(boot.glob("vmlinuz-*"), key=version_key)
    if not kernels:
        msg = "no /boot/vmlinuz-*: apt-get install linux-image-amd64"
        raise KernelNotFoundError(msg)
    kernel = kernels[-1]
    return kernel, kernel.name.removeprefix("vmlinuz-")


def module_load_order(modules_dep: str, wanted: tuple[str, ...]) -> list[str]:
    """Return module paths (relative, from modules.dep) for ``wanted``, dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        name = Path(path).name.split(".ko")[0].replace("-", "_")
        by_name[name] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in wanted:
        if name in by_name:  # built into this kernel when absent: nothing to load
            visit(by_name[name])
    return order


def _shared_libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"=> (/\S+)", out) + re.findall(r"^\s*(/\S+) \(", out, re.MULTILINE)
    return sorted(set(libs))


def _with_parents(entries: dict[str, CpioEntry], name: str, entry: CpioEntry) -> None:
    parts = name.split("/")
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        entries.setdefault(parent, CpioEntry(parent, _DIR))
    entries[name] = entry


def build_grub_efi(workdir: Path) -> Path:
    """Make the GRUB EFI binary the agent installs as ``EFI/BOOT/BOOTX64.EFI``."""
    cfg = workdir / "embedded.cfg"
    cfg.write_text(GRUB_EMBEDDED_CFG, encoding="utf-8")
    out = workdir / "BOOTX64.EFI"
    subprocess.run(
        ["grub-mkstandalone", "-O", "x86_64-efi", f"--modules={GRUB_MODULES}",
         f"--install-modules={GRUB_MODULES}", "--locales=", "--fonts=", "--themes=",
         "-o", str(out), f"boot/grub/grub.cfg={cfg}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def initramfs_entries(release: str) -> list[CpioEntry]:
    """Return every entry of the initramfs for kernel ``release``.

    Besides the agent it carries what installing to a disk needs (lab/README.md, "Disks
    and install"): the kernel itself, the GPT boot sector and the GRUB EFI binary.
    """
    entries: dict[str, CpioEntry] = {}

    def add_file(name: str, source: Path, mode: int = _FILE) -> None:
        _with_parents(entries, name, CpioEntry(name, mode, source.read_bytes()))

    for directory in ("dev", "proc", "sys", "run", "tmp", "etc", "bin", "sbin", "usr/bin"):
        _with_parents(entries, directory, CpioEntry(directory, _DIR))
    _with_parents(entries, "dev/console", CpioEntry("dev/console", stat.S_IFCHR | 0o600, b"", 5, 1))
    _with_parents(entries, "dev/null", CpioEntry("dev/null", stat.S_IFCHR | 0o666, b"", 1, 3))
    add_file("bin/busybox", Path("/bin/busybox"), _EXEC)
    _with_parents(entries, "bin/sh", CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    add_file("init", AGENT_DIR / "init", _EXEC)
    add_file("lab/lib.sh", AGENT_DIR / "lib.sh")
    add_file("etc/udhcpc.script", AGENT_DIR / "udhcpc.script", _EXEC)
    add_file("etc/acpi/PWRF/00000080", AGENT_DIR / "power-button.sh", _EXEC)
    add_file("lab/install.sh", AGENT_DIR / "install.sh")
    add_file("usr/lib/ssl/openssl.cnf", OPENSSL_CNF)
    add_file("lab/install/vmlinuz", Path("/boot") / f"vmlinuz-{release}")
    add_file("lab/install/gptmbr.bin", GPTMBR)
    with tempfile.TemporaryDirectory(prefix="lab-grub-") as tmp:
        add_file("lab/install/BOOTX64.EFI", build_grub_efi(Path(tmp)))
    for binary in BINARIES:
        add_file(binary.lstrip("/"), Path(binary), _EXEC)
        for lib in _shared_libraries(binary):
            add_file(lib.lstrip("/"), Path(lib), _EXEC)
    modules_root = Path("/lib/modules") / release
    order = module_load_order((modules_root / "modules.dep").read_text(), WANTED_MODULES)
    names = []
    for relative in order:
        name = Path(relative).name.split(".ko")[0]
        names.append(name)
        add_file(f"lib/modules/{name}.ko", modules_root / relative)
    order_file = ("\n".join(names) + "\n").encode()
    _with_parents(entries, "lib/modules/order", CpioEntry("lib/modules/order", _FILE, order_file))
    return sorted(entries.values(), key=lambda e: e.name)


def build_initramfs(output: Path, release: str | None = None) -> Path:
    """Write the gzip'd initramfs to ``output`` and return it."""
    if release is None:
        release = find_kernel()[1]
    archive = newc_archive(initramfs_entries(release))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(gzip.compress(archive, compresslevel=6, mtime=0))
    tmp.replace(output)
    return output
