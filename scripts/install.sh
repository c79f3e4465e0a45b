#!/usr/bin/env bash
# Installs everything Coppice needs on Debian 12, as root, from this
# project's own files: Debian packages, then a virtualenv in .venv with the
# Python packages pyproject.toml names. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(
  qemu-utils qemu-system-x86 libnbd-bin python3-libnbd fio
  nbdkit  # bench/nbd_vs_qemu_nbd.py's second baseline (its file plugin)
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients python3-libvirt
  python3-venv python3-dev gcc busybox-static cpio xorriso openssl
  btrfs-progs duperemove
  # real golden VMs: libguestfs generalizes images offline (supermin needs a
  # kernel in /boot: linux-image-cloud-amd64); debootstrap builds the test guest
  libguestfs-tools python3-guestfs linux-image-cloud-amd64
  debootstrap genisoimage e2fsprogs fdisk util-linux cryptsetup-bin
  # the rbd backend and its single-node test cluster; qemu's rbd block driver
  ceph-mon ceph-osd ceph-common python3-rados python3-rbd qemu-block-extra
  # the web console's browser tests
  chromium chromium-driver
)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "coppice: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's python3 with system site packages: libnbd's and libvirt's Python
# bindings come from Debian packages built for exactly that interpreter.
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.coppice-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi

# Host setup for qemu:///system (root only). Everything it changes is printed
# here, prefixed "coppice host setup:"; Coppice's commands and tests change
# nothing on the host themselves. On a machine without systemd it also starts
# virtlogd and libvirtd (they are checked, and started if stopped, by
# `coppice` when a command needs them).
if [ "$(id -u)" = 0 ] && [ "${COPPICE_SKIP_HOST_SETUP:-0}" != 1 ]; then
  .venv/bin/python -m coppice.provision.hypervisor setup-host
else
  echo "coppice: host setup for qemu:///system skipped (needs root; COPPICE_SKIP_HOST_SETUP=1 skips it)"
fi
