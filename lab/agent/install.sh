# Installing to, booting from and wiping the lab VM's disk, like Talos (sourced by init).
#
# Layout (Talos: internal/pkg/partition/partition.go, pkg/machinery/constants): a GPT with
# EFI, BIOS, BOOT, META, STATE, EPHEMERAL in that order, named by their partition labels.
# Talos's sizes (EFI 100 MiB, BIOS 1 MiB, BOOT 1000-2000 MiB, META 1 MiB, STATE 100 MiB)
# are scaled down for the lab's small qcow2 disks, and every filesystem is FAT (Talos: vfat
# EFI, xfs elsewhere) so that one kernel module, mkfs.fat and both boot loaders cover
# them. The BIOS boot code is syslinux's gptmbr.bin, which boots the partition that
# carries GPT's "legacy BIOS bootable" attribute: BOOT, holding extlinux (Talos puts GRUB's
# core image in BIOS and sets the attribute there). UEFI: GRUB at the removable-media path
# EFI/BOOT/BOOTX64.EFI, reading grub.cfg from BOOT. STATE holds config.yaml (Talos:
# constants.ConfigFilename on the STATE partition).

LAB_EFI_GUID=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
LAB_BIOS_GUID=21686148-6449-6E6F-744E-656564454649
LAB_LINUX_GUID=0FC63DAF-8483-4772-8E79-3D69D8477DE4

# part_dev DISK N: the device node of partition N (/dev/vda3, /dev/nvme0n1p3).
part_dev() {
    case "$1" in *[0-9]) echo "${1}p$2" ;; *) echo "$1$2" ;; esac
}

# find_partition LABEL: the device node of the GPT partition named LABEL, if any.
find_partition() {
    local uevent
    for uevent in /sys/class/block/*/uevent; do
        if grep -qx "PARTNAME=$1" "$uevent" 2>/dev/null; then
            echo "/dev/$(sed -n 's/^DEVNAME=//p' "$uevent")"
            return 0
        fi
    done
    return 1
}

# wait_block_devices: give the disk driver a moment to register disks and partitions.
wait_block_devices() {
    local _
    for _ in $(seq 1 20); do
        ls /sys/class/block/ 2>/dev/null | grep -qv '^loop\|^ram' && return 0
        sleep 0.1
    done
    return 1
}

# install_config_disk CONFIG: the install disk named by the config, v1alpha1
# machine.install.disk or the UnattendedInstallConfig's `disk.dev_path == "..."` selector.
install_config_disk() {
    local disk
    disk=$(yaml_flatten < "$1" | yaml_get machine.install.disk)
    if [ -z "$disk" ]; then
        disk=$(sed -n 's/.*disk\.dev_path == \\\{0,1\}"\([^"\\]*\)\\\{0,1\}".*/\1/p' "$1" | head -n 1)
    fi
    echo "$disk"
}

# disk_cmdline: the kernel arguments of the installed system. Like Talos's installer, the
# PXE-only talos.config= is not carried over (the config is on STATE); the console, the
# platform and the lab's own arguments (and the telemetry addresses) are.
disk_cmdline() {
    local word out="talos.platform=metal"
    for word in $(cat /proc/cmdline); do
        case "$word" in
        console=* | loglevel=* | lab.* | talos.events.sink=* | talos.logging.kernel=*)
            out="$out $word" ;;
        esac
    done
    echo "$out"
}

# repack_initramfs OUT: the running root file system as an uncompressed newc cpio for the
# disk, without the install payload and without /run (the config and keys live there).
repack_initramfs() {
    (
        cd / || exit 1
        find . -xdev \( -path ./lab/install -o -path ./run -o -path ./tmp -o -path ./mnt \
            -o -path ./proc -o -path ./sys -o -path ./dev \) -prune -o -print \
            | sed -e 's|^\./||' -e '/^\.$/d'
        printf 'run\ntmp\nmnt\nproc\nsys\ndev\n'
    ) > /tmp/initramfs.list
    mkdir -p /tmp/cpio-root/run /tmp/cpio-root/tmp /tmp/cpio-root/mnt /tmp/cpio-root/proc \
        /tmp/cpio-root/sys /tmp/cpio-root/dev
    [ -c /tmp/cpio-root/dev/console ] || mknod /tmp/cpio-root/dev/console c 5 1
    (cd / && grep -v '^\(run\|tmp\|mnt\|proc\|sys\|dev\)$' /tmp/initramfs.list | cpio -o -H newc) > "$1" \
        2>/dev/null || return 1
    # A second archive, concatenated (the kernel unpacks each in turn), for the directories
    # that are mount points here and /dev/console, which the devtmpfs mount hides.
    (cd /tmp/cpio-root && printf 'run\ntmp\nmnt\nproc\nsys\ndev\ndev/console\n' | cpio -o -H newc) \
        >> "$1" 2>/dev/null
}

# install_to_disk DISK CONFIG: partition, format, boot loaders, kernel, initramfs, config.
# File systems are made by dosfstools' mkfs.fat (FAT12/16/32 by size, as the FAT spec
# wants): busybox's mkdosfs always makes FAT32, which OVMF's FAT driver, reading a small
# volume's cluster count as FAT16, did not find ("UEFI Misc Device": Not Found), and at
# 40 MiB read BOOTX64.EFI back with wrong bytes from sector 9 on (mtools agreed), so
# OVMF failed with "Load Error". Linux read both fine.
install_to_disk() {
    local disk=$1 config=$2 args
    sfdisk -q --wipe always --wipe-partitions always "$disk" <<EOF >/dev/null 2>&1 || return 1
label: gpt
size=40MiB, type=$LAB_EFI_GUID, name="EFI"
size=1MiB, type=$LAB_BIOS_GUID, name="BIOS"
size=72MiB, type=$LAB_LINUX_GUID, name="BOOT", attrs="LegacyBIOSBootable"
size=1MiB, type=$LAB_LINUX_GUID, name="META"
size=8MiB, type=$LAB_LINUX_GUID, name="STATE"
type=$LAB_LINUX_GUID, name="EPHEMERAL"
EOF
    for _ in $(seq 1 50); do [ -b "$(part_dev "$disk" 6)" ] && break; sleep 0.1; done
    for n in 1 3 5 6; do mkfs.fat "$(part_dev "$disk" $n)" >/dev/null 2>&1 || return 1; done
    mkdir -p /mnt/efi /mnt/boot /mnt/state
    mount -t vfat "$(part_dev "$disk" 3)" /mnt/boot || return 1
    cp /lab/install/vmlinuz /mnt/boot/vmlinuz || return 1
    repack_initramfs /mnt/boot/initramfs || return 1
    args=$(disk_cmdline)
    printf 'DEFAULT talos\nPROMPT 0\nTIMEOUT 0\nLABEL talos\n  KERNEL /vmlinuz\n  INITRD /initramfs\n  APPEND %s\n' \
        "$args" > /mnt/boot/extlinux.conf
    printf 'set timeout=0\nlinux /vmlinuz %s\ninitrd /initramfs\nboot\n' "$args" > /mnt/boot/grub.cfg
    : > /mnt/boot/lab-boot
    extlinux --install /mnt/boot >/dev/null 2>&1 || return 1
    umount /mnt/boot
    dd if=/lab/install/gptmbr.bin of="$disk" bs=440 count=1 conv=notrunc 2>/dev/null || return 1
    mount -t vfat "$(part_dev "$disk" 1)" /mnt/efi || return 1
    mkdir -p /mnt/efi/EFI/BOOT
    cp /lab/install/BOOTX64.EFI /mnt/efi/EFI/BOOT/BOOTX64.EFI || return 1
    umount /mnt/efi
    mount -t vfat "$(part_dev "$disk" 5)" /mnt/state || return 1
    cp "$config" /mnt/state/config.yaml || return 1
    umount /mnt/state
    sync
}

# load_state_config OUT: copy config.yaml from an installed disk's STATE; fails if none.
load_state_config() {
    local dev
    dev=$(find_partition STATE) || return 1
    mkdir -p /mnt/state
    mount -t vfat -o ro "$dev" /mnt/state 2>/dev/null || return 1
    if [ -f /mnt/state/config.yaml ]; then
        cp /mnt/state/config.yaml "$1"
        umount /mnt/state
        return 0
    fi
    umount /mnt/state
    return 1
}

# zero_device DEV [MIB]: overwrite DEV with zeros (the whole of it, or its first and last
# MIB MiB).
zero_device() {
    local dev=$1 mib=$2 sectors
    if [ -z "$mib" ]; then
        dd if=/dev/zero of="$dev" bs=1M 2>/dev/null
        return 0
    fi
    sectors=$(cat "/sys/class/block/${dev##*/}/size")
    dd if=/dev/zero of="$dev" bs=1M count="$mib" conv=notrunc 2>/dev/null
    dd if=/dev/zero of="$dev" bs=512 seek=$((sectors - mib * 2048)) count=$((mib * 2048)) \
        conv=notrunc 2>/dev/null
}

# wipe_system_disk: talos.experimental.wipe=system (Talos: ResetSystemDiskPartitions).
# META and STATE (the config: machine token, CA keys) are zeroed in full; the other
# partitions and the GPT (both copies) at their ends. Prints what it wiped.
wipe_system_disk() {
    local label dev disk wiped=""
    for label in META STATE EPHEMERAL BOOT EFI BIOS; do
        dev=$(find_partition "$label") || continue
        case "$label" in META | STATE) zero_device "$dev" ;; *) zero_device "$dev" 1 ;; esac
        disk=/dev/$(basename "$(readlink -f "/sys/class/block/${dev##*/}/..")")
        wiped="$wiped $label"
    done
    [ -n "$disk" ] && zero_device "$disk" 1
    sync
    echo "${wiped# }"
}
