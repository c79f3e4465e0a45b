#!/bin/bash
# build-debian-cloudinit.sh OUTDIR
#
# Coppice's copy of the verified recipe in ../shared/guest (see
# tests/realguest/README.md), with one addition: BOOT=both builds both disk
# layouts from one debootstrap (OUTDIR/direct/ and OUTDIR/bios/), which
# halves the build time in CI.
#
# Builds (as root) a small Debian 12 "bookworm" guest disk image that runs the
# real cloud-init package and picks up a NoCloud seed (ISO/disk labelled
# "cidata").  Two boot variants (BOOT=):
#
# BOOT=direct (default): QEMU direct kernel boot, kernel/initrd outside the disk
#   OUTDIR/debian-ci.raw   sparse raw disk, one ext4 filesystem on the whole
#                          disk (no partition table), label $FS_LABEL
#   OUTDIR/vmlinuz         kernel  (linux-image-cloud-amd64) for direct boot
#   OUTDIR/initrd.img      initramfs (virtio/scsi-cd/iso9660 modules included)
#   OUTDIR/cmdline.txt     kernel command line to use with them
#
# BOOT=bios: one self-contained disk file, booted by the firmware
#   (SeaBIOS -> GRUB in the MBR -> kernel), like a downloaded cloud image
#   OUTDIR/debian-ci.raw   sparse raw disk: MBR partition table, partition 1
#                          (type 83, active) from 1 MiB to the end holding the
#                          ext4 root (label $FS_LABEL); grub-pc (i386-pc) boot
#                          code in the MBR and the gap before the partition;
#                          /boot/grub/grub.cfg made by update-grub, serial +
#                          console terminal, console=ttyS0,115200n8.
#   No vmlinuz/initrd.img/cmdline.txt are written (stale ones in OUTDIR are
#   removed), so boot-check.sh sees no kernel next to the image and boots it
#   through the firmware.
#
#   OUTDIR/build-info.txt  versions, sizes, timings of this build (both)
#
# The Debian mirror is NOT hard-coded: it is read at run time from this
# machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list
# and *.sources, deb822).  Override with MIRROR=... if needed.
#
# Tunables (environment):
#   BOOT=direct|bios  SUITE=bookworm  SIZE=2G  FS_LABEL=debian-ci  METHOD=mkfs-d|loop
#   GRUB_TIMEOUT=1    (BOOT=bios) seconds GRUB shows its menu; 0 = boot at once
#   EXTRA_PKGS="openssh-server ..."   extra packages to install in the guest
#   WORKDIR=/tmp/...  (rootfs staging dir; removed at the end unless KEEP_WORKDIR=1)
#
# Needs (Debian host): debootstrap e2fsprogs (>= 1.43 for mkfs.ext4 -d);
# BOOT=bios also needs sfdisk (fdisk), losetup + partx (util-linux), mount, and
# loop devices.
set -euo pipefail

OUTDIR=${1:?usage: $0 OUTDIR}
BOOT=${BOOT:-direct}
SUITE=${SUITE:-bookworm}
SIZE=${SIZE:-2G}
FS_LABEL=${FS_LABEL:-debian-ci}
METHOD=${METHOD:-mkfs-d}
GRUB_TIMEOUT=${GRUB_TIMEOUT:-1}
EXTRA_PKGS=${EXTRA_PKGS:-}
KEEP_WORKDIR=${KEEP_WORKDIR:-0}

[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }
case "$BOOT" in direct|bios|both) ;; *) echo "BOOT must be direct, bios or both" >&2; exit 1 ;; esac
case "$METHOD" in mkfs-d|loop) ;; *) echo "METHOD must be mkfs-d or loop" >&2; exit 1 ;; esac
[[ $GRUB_TIMEOUT =~ ^[0-9]+$ ]] || { echo "GRUB_TIMEOUT must be a whole number of seconds" >&2; exit 1; }
for t in debootstrap mkfs.ext4 e2fsck chroot; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y debootstrap e2fsprogs)" >&2; exit 1; }
done
if [ "$BOOT" != direct ]; then
    for t in sfdisk losetup partx blkid mount umount; do
        command -v "$t" >/dev/null || { echo "missing $t (BOOT=bios; apt-get install -y fdisk util-linux mount)" >&2; exit 1; }
    done
fi

log() { printf '[%s +%4ss] %s\n' "$(date +%T)" "$(( $(date +%s) - T0 ))" "$*" >&2; }
T0=$(date +%s)

# --------------------------------------------------------------------------
# Mirror detection from the host's apt sources (first enabled "deb" entry that
# carries the wanted suite).  Prints the URI or nothing.
# --------------------------------------------------------------------------
uri_for_suite() {
    local want=$1 f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v suite="$want" '
            /^[[:space:]]*#/ {next}
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i+1) == suite) { print $i; exit }
            }' "$f"
    done | head -n1 | grep . && return 0
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v suite="$want" '
            function flush(   n, s, u, i) {
                if (!done && uris != "" && enabled != "no" && types ~ /(^|[ \t])deb([ \t]|$)/) {
                    n = split(suites, s, /[ \t]+/)
                    for (i = 1; i <= n; i++) if (s[i] == suite) { split(uris, u, /[ \t]+/); print u[1]; done = 1; break }
                }
                types = uris = suites = enabled = ""
            }
            /^[[:space:]]*#/ {next}
            /^[[:space:]]*$/ {flush(); next}
            /^[A-Za-z-]+:/ {
                k = tolower(substr($0, 1, index($0, ":") - 1)); v = substr($0, index($0, ":") + 1)
                gsub(/^[ \t]+|[ \t]+$/, "", v)
                if (k == "types") types = v; else if (k == "uris") uris = v
                else if (k == "suites") suites = v; else if (k == "enabled") enabled = tolower(v)
            }
            END {flush()}' "$f"
    done | head -n1 | grep .
}

MIRROR=${MIRROR:-$(uri_for_suite "$SUITE" || true)}
[ -n "$MIRROR" ] || { echo "could not find a 'deb ... $SUITE' entry in the host apt sources; set MIRROR=" >&2; exit 1; }
MIRROR_UPDATES=${MIRROR_UPDATES:-$(uri_for_suite "$SUITE-updates" || true)}
MIRROR_SECURITY=${MIRROR_SECURITY:-$(uri_for_suite "$SUITE-security" || true)}
log "mirror: $MIRROR  updates: ${MIRROR_UPDATES:-none}  security: ${MIRROR_SECURITY:-none}"

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
if [ -n "${WORKDIR:-}" ]; then
    # a caller-supplied WORKDIR must be empty or absent; only its rootfs/ is removed
    mkdir -p "$WORKDIR"; WORKDIR=$(cd "$WORKDIR" && pwd); OWN_WORKDIR=0
    [ "$WORKDIR" != / ] && [ -z "$(ls -A "$WORKDIR")" ] || { echo "WORKDIR must be an empty dir" >&2; exit 1; }
else
    WORKDIR=$(mktemp -d /tmp/debci-build.XXXXXX); OWN_WORKDIR=1
fi
ROOT=$WORKDIR/rootfs
MNT=$WORKDIR/mnt
# both are chroot roots: never let an empty value turn "$ROOT/etc" into /etc
: "${ROOT:?}" "${MNT:?}"
[ "$ROOT" != / ] && [ "$MNT" != / ] || { echo "bad WORKDIR" >&2; exit 1; }
IMG=$OUTDIR/debian-ci.raw
mkdir -p "$ROOT"

MOUNTS=()
LOOPDEV=""
cleanup() {
    local i
    for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do
        umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
    done
    MOUNTS=()
    # only the loop device this run attached (BOOT=bios)
    if [ -n "$LOOPDEV" ]; then
        partx --delete "$LOOPDEV" 2>/dev/null || true
        losetup -d "$LOOPDEV" 2>/dev/null || true; LOOPDEV=""
    fi
    if [ "$KEEP_WORKDIR" != 1 ] && [ -d "$WORKDIR/rootfs" ]; then
        # never recurse into a dir that still has something mounted below it
        if ! grep -q " $WORKDIR/" /proc/mounts; then
            rm -rf "${ROOT:?}" "${MNT:?}"
            [ "$OWN_WORKDIR" = 1 ] && rm -rf "$WORKDIR"
        fi
    fi
}
trap cleanup EXIT
bind() { mount "$@"; MOUNTS+=("${@: -1}"); }

# --------------------------------------------------------------------------
# 1. debootstrap (minbase + systemd as init)
# --------------------------------------------------------------------------
log "debootstrap --variant=minbase $SUITE"
T_DB0=$(date +%s)
debootstrap --variant=minbase --components=main \
    --include=systemd-sysv,udev,zstd \
    "$SUITE" "$ROOT" "$MIRROR" > "$WORKDIR/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORKDIR/debootstrap.log" >&2; exit 1; }
T_DB1=$(date +%s)
log "debootstrap done ($(( T_DB1 - T_DB0 ))s)"

bind -t proc proc "$ROOT/proc"
bind -t sysfs sys "$ROOT/sys"
bind --bind /dev "$ROOT/dev"
bind --bind /dev/pts "$ROOT/dev/pts"

# no daemons started inside the chroot
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"

# keep the image small: no docs/man/locales (copyright files kept)
cat > "$ROOT/etc/dpkg/dpkg.cfg.d/01-coppice-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF
cat > "$ROOT/etc/apt/apt.conf.d/01-coppice" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF

{
    echo "deb $MIRROR $SUITE main"
    [ -n "$MIRROR_UPDATES" ]  && echo "deb $MIRROR_UPDATES $SUITE-updates main"
    [ -n "$MIRROR_SECURITY" ] && echo "deb $MIRROR_SECURITY $SUITE-security main"
} > "$ROOT/etc/apt/sources.list"

# fstab must exist before the kernel is installed: the initramfs fsck hook
# reads it (else: "Warning: fsck not present, so skipping root file system").
cat > "$ROOT/etc/fstab" <<EOF
# <fs>              <mount> <type> <options>                      <dump> <pass>
LABEL=$FS_LABEL     /       ext4   defaults,noatime,errors=remount-ro 0  1
EOF
# C.UTF-8 is built into glibc, no locale-gen needed.  (cloud-init's default
# en_US.UTF-8 is not generated here: cc_locale failed -> cloud-config exit 1.)
echo 'LANG=C.UTF-8' > "$ROOT/etc/default/locale"

# initramfs: make sure virtio (disk, scsi, pci), the scsi cdrom and iso9660
# are in the initrd and loaded early, so /dev/vda and the cidata CD exist
# before cloud-init-local runs.
mkdir -p "$ROOT/etc/initramfs-tools/conf.d"
# in a chroot the fsck hook cannot probe the (absent) root device: name the type
echo 'FSTYPE=ext4' > "$ROOT/etc/initramfs-tools/conf.d/coppice-fstype"
cat >> "$ROOT/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
virtio_scsi
virtio_net
sr_mod
isofs
ext4
EOF

# --------------------------------------------------------------------------
# 2. packages
# --------------------------------------------------------------------------
log "apt-get install (kernel, cloud-init, ...)"
T_AP0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 LANG=C.UTF-8
# BOOT=bios: the GRUB i386-pc images and grub-install/update-grub, without the
# grub-pc package (its postinst wants debconf answers for install devices and
# runs grub-install itself; here grub-install runs once, against the image).
BOOT_PKGS=""
[ "$BOOT" != direct ] && BOOT_PKGS="grub-pc-bin grub2-common"
chroot "$ROOT" apt-get update -q > "$WORKDIR/apt.log" 2>&1 || { tail -n 30 "$WORKDIR/apt.log" >&2; exit 1; }
chroot "$ROOT" apt-get -y -q dist-upgrade >> "$WORKDIR/apt.log" 2>&1 || { tail -n 30 "$WORKDIR/apt.log" >&2; exit 1; }
# shellcheck disable=SC2086
chroot "$ROOT" apt-get install -y -q --no-install-recommends \
    linux-image-cloud-amd64 cloud-init dbus iproute2 e2fsprogs netbase \
    $BOOT_PKGS $EXTRA_PKGS >> "$WORKDIR/apt.log" 2>&1 || { tail -n 30 "$WORKDIR/apt.log" >&2; exit 1; }
T_AP1=$(date +%s)
log "apt-get done ($(( T_AP1 - T_AP0 ))s)"

# --------------------------------------------------------------------------
# 3. configuration
# --------------------------------------------------------------------------
log "configure"
echo localhost > "$ROOT/etc/hostname"
cat > "$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF

cat > "$ROOT/etc/cloud/cloud.cfg.d/99-coppice.cfg" <<'EOF'
# coppice test guest: seed comes from a NoCloud ISO/disk labelled "cidata".
# "None" is the fallback so boot never waits for a network datasource.
datasource_list: [ NoCloud, None ]
# glibc built-in locale (the default en_US.UTF-8 is not generated here)
locale: C.UTF-8
# grub_dpkg only records the boot disk as the debconf answer
# grub-pc/install_devices, which nothing reads: the grub-pc package is not
# installed (BOOT=direct: no grub at all; BOOT=bios: grub-pc-bin only).
grub_dpkg:
  enabled: false
EOF

if [ "$BOOT" != direct ]; then
    # read by update-grub (grub-mkconfig) below and again on kernel upgrades
    # in the guest; /etc/default/grub itself belongs to the grub-pc package.
    mkdir -p "$ROOT/etc/default/grub.d"
    cat > "$ROOT/etc/default/grub.d/50-coppice.cfg" <<EOF
# coppice test guest: boot straight away, everything on the serial console
GRUB_DEFAULT=0
GRUB_TIMEOUT=$GRUB_TIMEOUT
GRUB_TIMEOUT_STYLE=menu
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1"
GRUB_DISABLE_RECOVERY=true
GRUB_DISABLE_SUBMENU=y
GRUB_DISABLE_OS_PROBER=true
EOF
fi
if [ ! -x "$ROOT/usr/bin/ssh-keygen" ]; then
    # no openssh in the image: cc_ssh would try ssh-keygen for 4 host key
    # types and log 4 tracebacks.  An empty ssh_keys map makes it skip host
    # key generation (schema-valid; "ssh_genkeytypes: []" is not: minItems 1)
    # while cc_ssh still installs users' authorized keys.
    printf '%s\n' '# no openssh-server installed: no host keys to generate' 'ssh_keys: {}' \
        > "$ROOT/etc/cloud/cloud.cfg.d/98-coppice-nossh.cfg"
fi

# networking: systemd-networkd (cloud-init renders its fallback DHCP config
# for it when a NIC exists); never block boot waiting for "online".
chroot "$ROOT" systemctl enable systemd-networkd.service >/dev/null 2>&1 || true
chroot "$ROOT" systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1 || true

# serial console login on ttyS0 (the getty generator also does this when
# console=ttyS0 is on the kernel command line).
chroot "$ROOT" systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1 || true

# things a short-lived test VM does not need
for u in apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
         e2scrub_all.timer e2scrub_all.service e2scrub_reap.service fstrim.timer \
         systemd-firstboot.service; do
    if [ -e "$ROOT/lib/systemd/system/$u" ] || [ -e "$ROOT/usr/lib/systemd/system/$u" ]; then
        chroot "$ROOT" systemctl mask "$u" >/dev/null 2>&1 || true
    fi
done

# image must look "never booted": no cloud-init state, no machine-id, no
# host keys, no logs.  cloud-init re-runs per-instance modules whenever the
# seed's instance-id differs from /var/lib/cloud/data/instance-id.
chroot "$ROOT" cloud-init clean --logs >/dev/null 2>&1 || true
rm -rf "$ROOT"/var/lib/cloud/* "$ROOT"/var/log/cloud-init*.log
: > "$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
rm -f "$ROOT"/etc/ssh/ssh_host_*

# --------------------------------------------------------------------------
# 4. kernel + initrd out, trim, unmount
# --------------------------------------------------------------------------
KVER=$(basename "$(ls -1d "$ROOT"/lib/modules/* | sort -V | tail -n1)")
if [ "$BOOT" = both ]; then
    mkdir -p "$OUTDIR/direct" "$OUTDIR/bios"
    cp --sparse=always "$ROOT/boot/vmlinuz-$KVER" "$OUTDIR/direct/vmlinuz"
    cp --sparse=always "$ROOT/boot/initrd.img-$KVER" "$OUTDIR/direct/initrd.img"
    echo "root=LABEL=$FS_LABEL ro console=ttyS0,115200n8" > "$OUTDIR/direct/cmdline.txt"
    rm -f "$OUTDIR/bios/vmlinuz" "$OUTDIR/bios/initrd.img" "$OUTDIR/bios/cmdline.txt"
elif [ "$BOOT" = direct ]; then
    cp --sparse=always "$ROOT/boot/vmlinuz-$KVER" "$OUTDIR/vmlinuz"
    cp --sparse=always "$ROOT/boot/initrd.img-$KVER" "$OUTDIR/initrd.img"
    echo "root=LABEL=$FS_LABEL ro console=ttyS0,115200n8" > "$OUTDIR/cmdline.txt"
else
    # the disk boots itself: a kernel left next to it would make boot-check.sh
    # (and anyone else) boot it directly instead
    rm -f "$OUTDIR/vmlinuz" "$OUTDIR/initrd.img" "$OUTDIR/cmdline.txt"
fi

PKGVERS=$(chroot "$ROOT" dpkg-query -W -f='${Package}=${Version}\n' \
    cloud-init systemd linux-image-cloud-amd64 "linux-image-$KVER" python3 2>/dev/null | tr '\n' ' ')
NPKGS=$(chroot "$ROOT" dpkg-query -W -f='${db:Status-Abbrev}\n' | grep -c '^ii')

chroot "$ROOT" apt-get clean
rm -f "$ROOT/usr/sbin/policy-rc.d"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/debconf/*-old \
       "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/* "$ROOT"/tmp/* "$ROOT"/var/tmp/* \
       "$ROOT"/root/.bash_history
find "$ROOT/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true

for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do umount "${MOUNTS[$i]}"; done
MOUNTS=()
ROOTFS_KB=$(du -sk -x "$ROOT" | cut -f1)
log "rootfs staged: ${ROOTFS_KB} KiB, kernel $KVER"

# --------------------------------------------------------------------------
# 5. filesystem image (sparse). Default: mkfs.ext4 -d (no loop device, no
#    mount needed).  METHOD=loop: mkfs, loop-mount, cp -a.
#    BOOT=direct: the file system is the whole disk.
#    BOOT=bios: the file system is made in a separate file, copied into
#    partition 1 (1 MiB .. end) of an MBR disk, then GRUB is installed from
#    inside the image (chroot on the loop-mounted partition).
# --------------------------------------------------------------------------
# write_image BOOT IMG: the disk image for one layout from the staged $ROOT
write_image() {
local BOOT=$1 IMG=$2
rm -f "$IMG.tmp"
truncate -s "$SIZE" "$IMG.tmp"
DISK_BYTES=$(stat -c %s "$IMG.tmp")
PART_START_SECTOR=2048                      # 1 MiB: room for GRUB's core.img
if [ "$BOOT" = bios ]; then
    (( DISK_BYTES % 512 == 0 )) || { echo "SIZE must be a multiple of 512 bytes" >&2; exit 1; }
    # one primary Linux partition, active (some BIOSes only boot a disk with
    # an active partition), from sector 2048 to the last sector
    printf 'label: dos\nunit: sectors\n\nstart=%s, type=83, bootable\n' "$PART_START_SECTOR" \
        | sfdisk -q --no-reread --no-tell-kernel "$IMG.tmp" > "$WORKDIR/sfdisk.log" 2>&1 \
        || { cat "$WORKDIR/sfdisk.log" >&2; exit 1; }
    PART_SECTORS=$(sfdisk --dump "$IMG.tmp" | sed -n 's/^.*: *start= *'"$PART_START_SECTOR"', *size= *\([0-9]*\).*/\1/p')
    [ -n "$PART_SECTORS" ] || { sfdisk --dump "$IMG.tmp" >&2; echo "could not read partition 1 back" >&2; exit 1; }
    FSIMG=$WORKDIR/part1.raw
    rm -f "$FSIMG"; truncate -s $(( PART_SECTORS * 512 )) "$FSIMG"
else
    FSIMG=$IMG.tmp
fi
# On a fresh sparse file mke2fs "discards" (punches) the whole file first, so
# inode tables are already zero and get flagged ITABLE_ZEROED for free (no
# ext4lazyinit writes in the guest / in every overlay).  lazy_journal_init=1
# keeps the 64 MiB journal a hole: zeroing it (the default) allocated 64 MiB
# of unwritten extents (measured: 66720 KiB vs 1188 KiB for an empty 2G fs).
# shellcheck disable=SC2054
MKFS_OPTS=(-q -F -t ext4 -L "$FS_LABEL" -m 1 -E lazy_itable_init=0,lazy_journal_init=1)
case "$METHOD" in
  mkfs-d)
    mkfs.ext4 "${MKFS_OPTS[@]}" -d "$ROOT" "$FSIMG"
    ;;
  loop)
    mkfs.ext4 "${MKFS_OPTS[@]}" "$FSIMG"
    mkdir -p "$MNT"
    bind -o loop "$FSIMG" "$MNT"
    cp -a --sparse=always "$ROOT"/. "$MNT"/
    sync; umount "$MNT"; MOUNTS=()
    ;;
  *) echo "METHOD must be mkfs-d or loop" >&2; exit 1 ;;
esac
e2fsck -f -n "$FSIMG" > "$WORKDIR/e2fsck.log" 2>&1 || { cat "$WORKDIR/e2fsck.log" >&2; exit 1; }

if [ "$BOOT" = bios ]; then
    # partition 1 <- the file system; all-zero blocks are skipped (stay holes)
    dd if="$FSIMG" of="$IMG.tmp" bs=1M seek=$(( PART_START_SECTOR * 512 / 1048576 )) \
       conv=notrunc,sparse status=none
    rm -f "$FSIMG"

    # The whole disk on a loop device, partition 1 as /dev/loopNp1 (made by
    # the kernel in devtmpfs; no udev needed).  --partscan asks the kernel to
    # read the partition table; a kernel built without CONFIG_MSDOS_PARTITION
    # (this machine's: 6.18 with "# CONFIG_MSDOS_PARTITION is not set") finds
    # none, so partx then reads the table itself and adds the partition with
    # the BLKPG ioctl.
    LOOPDEV=$(losetup --find --show --partscan "$IMG.tmp")
    PARTDEV=${LOOPDEV}p1
    for _ in $(seq 1 20); do [ -b "$PARTDEV" ] && break; sleep 0.1; done
    if [ ! -b "$PARTDEV" ]; then
        partx --add --nr 1 "$LOOPDEV" > "$WORKDIR/partx.log" 2>&1 || { cat "$WORKDIR/partx.log" >&2; exit 1; }
        for _ in $(seq 1 50); do [ -b "$PARTDEV" ] && break; sleep 0.1; done
    fi
    [ -b "$PARTDEV" ] || { echo "no $PARTDEV after losetup --partscan and partx --add" >&2; exit 1; }
    mkdir -p "$MNT"
    bind "$PARTDEV" "$MNT"
    FS_UUID=$(blkid -o value -s UUID "$PARTDEV")
    # A private /dev for the chroot: the two loop nodes, the usual character
    # devices, and the /dev/disk/by-uuid link udev would make.  grub-mkconfig
    # writes root=UUID=... only when /dev/disk/by-uuid/<uuid> exists (else
    # root=/dev/loopNp1, which the guest does not have); nothing is created
    # in the host's /dev.
    bind -t tmpfs -o mode=0755,size=1m coppice-dev "$MNT/dev"
    for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
        set -- $n; mknod -m 666 "$MNT/dev/$1" c "$2" "$3"
    done
    for d in "$LOOPDEV" "$PARTDEV"; do
        IFS=: read -r MAJ MIN < "/sys/class/block/$(basename "$d")/dev"
        mknod -m 600 "$MNT$d" b "$MAJ" "$MIN"
    done
    mkdir -p "$MNT/dev/disk/by-uuid"
    ln -s "../../$(basename "$PARTDEV")" "$MNT/dev/disk/by-uuid/$FS_UUID"
    bind -t proc proc "$MNT/proc"
    bind -t sysfs sys "$MNT/sys"
    log "grub-install --target=i386-pc $LOOPDEV (partition $PARTDEV, fs UUID $FS_UUID)"
    chroot "$MNT" grub-install --target=i386-pc --no-floppy --modules="part_msdos ext2" \
        "$LOOPDEV" > "$WORKDIR/grub.log" 2>&1 || { cat "$WORKDIR/grub.log" >&2; exit 1; }
    chroot "$MNT" update-grub >> "$WORKDIR/grub.log" 2>&1 || { cat "$WORKDIR/grub.log" >&2; exit 1; }
    # what the guest will boot must not name a host device
    grep -q "root=UUID=$FS_UUID " "$MNT/boot/grub/grub.cfg" \
        || { grep -n 'linux\b' "$MNT/boot/grub/grub.cfg" >&2; echo "grub.cfg: no root=UUID=$FS_UUID" >&2; exit 1; }
    if grep -q '/dev/loop' "$MNT/boot/grub/grub.cfg"; then
        grep -n '/dev/loop' "$MNT/boot/grub/grub.cfg" >&2; echo "grub.cfg names a host loop device" >&2; exit 1
    fi
    grep -q 'console=ttyS0' "$MNT/boot/grub/grub.cfg" || { echo "grub.cfg: no console=ttyS0" >&2; exit 1; }
    GRUB_LINUX=$(grep -m1 '^[[:space:]]*linux[[:space:]]' "$MNT/boot/grub/grub.cfg" | sed 's/^[[:space:]]*//')
    GRUB_VER=$(chroot "$MNT" dpkg-query -W -f='${Version}' grub-pc-bin 2>/dev/null || true)
    rm -f "$MNT"/var/log/*.log
    sync
    for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do umount "${MOUNTS[$i]}"; done
    MOUNTS=()
    e2fsck -f -n "$PARTDEV" > "$WORKDIR/e2fsck.log" 2>&1 || { cat "$WORKDIR/e2fsck.log" >&2; exit 1; }
    partx --delete "$LOOPDEV" 2>/dev/null || true
    losetup -d "$LOOPDEV"; LOOPDEV=""
    # boot code present: MBR signature and GRUB's boot.img
    [ "$(od -An -tx1 -j510 -N2 "$IMG.tmp" | tr -d ' ')" = 55aa ] || { echo "no MBR signature" >&2; exit 1; }
    head -c 512 "$IMG.tmp" | grep -aq GRUB || { echo "no GRUB boot code in the MBR" >&2; exit 1; }
fi
mv -f "$IMG.tmp" "$IMG"
}
T_FS0=$(date +%s)
if [ "$BOOT" = both ]; then
    write_image direct "$OUTDIR/direct/debian-ci.raw"
    write_image bios "$OUTDIR/bios/debian-ci.raw"
    IMG=$OUTDIR/bios/debian-ci.raw
else
    write_image "$BOOT" "$IMG"
fi
T_FS1=$(date +%s)
log "image written ($(( T_FS1 - T_FS0 ))s, method $METHOD, boot $BOOT)"

T1=$(date +%s)
if [ "$BOOT" = both ]; then
    BOOT_INFO="boot:             both (direct/ and bios/; bios: partition 1 at sector $PART_START_SECTOR, grub-pc-bin $GRUB_VER)
grub linux line:  $GRUB_LINUX"
elif [ "$BOOT" = direct ]; then
    BOOT_INFO="boot:             direct kernel boot (no partition table, no boot loader)
vmlinuz:          $(stat -c %s "$OUTDIR/vmlinuz") bytes
initrd.img:       $(stat -c %s "$OUTDIR/initrd.img") bytes
cmdline:          $(cat "$OUTDIR/cmdline.txt")"
else
    BOOT_INFO="boot:             bios (MBR, partition 1 at sector $PART_START_SECTOR, $PART_SECTORS sectors; grub-pc-bin $GRUB_VER)
fs uuid:          $FS_UUID
grub linux line:  $GRUB_LINUX"
fi
ALLOC=$(du -k "$IMG" | cut -f1)
VIRT=$(stat -c %s "$IMG")
cat > "$OUTDIR/build-info.txt" <<EOF
built:            $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) by $(basename "$0")
suite:            $SUITE
mirror:           $MIRROR
kernel:           $KVER
packages:         $PKGVERS
installed pkgs:   $NPKGS
method:           $METHOD
fs label:         $FS_LABEL
rootfs (du):      ${ROOTFS_KB} KiB
image virtual:    $VIRT bytes
image allocated:  ${ALLOC} KiB
$BOOT_INFO
time debootstrap: $(( T_DB1 - T_DB0 ))s
time apt:         $(( T_AP1 - T_AP0 ))s
time mkfs:        $(( T_FS1 - T_FS0 ))s
time total:       $(( T1 - T0 ))s
EOF
cat "$OUTDIR/build-info.txt"
