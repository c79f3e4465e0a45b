"""Host files named in requests (a template's ``image``, ``kernel`` and
``initrd``, a customization spec's ``ssh_key_file``): where they may lie and
how they are opened. One policy, applied at every call site.

A token holder is a storage administrator, not root on the daemon's host: the
daemon reads a host file for a request only from its import directory
(``coppice serve --import-dir DIR``) or from the files a client uploaded
(``UploadArea``; the CLI uploads its local files), never from anywhere else.

Contract:

* ``ImportPolicy(dirs)``: a path is accepted when the file it opens lies
  inside one of ``dirs`` (checked on the opened file's real path, so a
  symlinked directory cannot lead outside). ``ImportPolicy.local()`` is the
  CLI's own process reading its user's files: any directory, same opening
  rules. ``ImportPolicy(())`` accepts no host path.
* ``policy.open(path, what)`` -> ``HostFile``: opened read-only with
  ``O_NOFOLLOW`` (a symlink as the last component is refused) and
  ``O_NONBLOCK`` (a FIFO never blocks the daemon); only a regular file is
  accepted. ``HostFile.read(limit)`` reads at most ``limit`` bytes.
* ``probe_image(hostfile)`` -> ``qemu-img info`` of the opened file, with
  the format given to every later ``qemu-img`` call. External references are
  refused before ``qemu-img`` opens anything: a qcow2 backing file or
  external data file (read from the header), a VMDK descriptor file (its
  extents are separate host files); and again in ``qemu-img``'s answer
  (``backing-filename``, ``data-file``, an extent other than the image).
* Errors (``HostPathRefused``, ``BadImage``) name the path and the rule and
  what to do, never the file's content (``qemu-img``'s own message goes to
  the log, not to the caller: it can quote a descriptor's lines).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import stat
import struct
import subprocess

from .provisioning_errors import BadImage, HostPathRefused

log = logging.getLogger("coppice.provision")

# What qemu-img reads and Coppice imports; each is one host file (no external parts).
IMAGE_FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc")
_QCOW2_MAGIC = b"QFI\xfb"
_QCOW2_EXTERNAL_DATA = 1 << 2  # incompatible feature bit: the data lives in another file
_VMDK_SPARSE_MAGIC = b"KDMV"


class HostFile:
    """An opened, checked host file. ``fd_path`` names it for a subprocess given
    ``pass_fds=(fd,)`` and for this process (the same open file, not the path again)."""

    def __init__(self, path: str, fd: int, size: int):
        self.path, self.fd, self.size = path, fd, size

    @property
    def fd_path(self) -> str:
        return f"/dev/fd/{self.fd}"

    def read(self, limit: int) -> bytes:
        """At most ``limit`` bytes from the start; a larger file is refused."""
        if self.size > limit:
            raise HostPathRefused(
                path=self.path, why=f"it is {self.size} bytes, more than the {limit} allowed here"
            )
        chunks, off = [], 0
        while off < self.size:
            b = os.pread(self.fd, min(1 << 20, self.size - off), off)
            if not b:
                break
            chunks.append(b)
            off += len(b)
        return b"".join(chunks)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> HostFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ImportPolicy:
    """Which host files a request may name; see the module docstring."""

    def __init__(self, dirs=(), anywhere: bool = False):
        self.dirs = tuple(os.path.realpath(d) for d in dirs if d)
        self.anywhere = anywhere

    @classmethod
    def local(cls) -> ImportPolicy:
        return cls(anywhere=True)

    def describe(self) -> str:
        if self.anywhere:
            return "any directory"
        return ", ".join(self.dirs) or "nowhere"

    def open(self, path, what: str) -> HostFile:
        if not isinstance(path, str) or not path or "\0" in path:
            raise HostPathRefused(path=str(path)[:200], why=f"the {what} path is empty or invalid")
        if not self.anywhere and not os.path.isabs(path):
            raise HostPathRefused(path=path, why=f"the {what} path must be absolute")
        if not self.anywhere and not self.dirs:
            raise HostPathRefused(
                path=path,
                why=f"this daemon reads no host files for requests; upload the {what} (the CLI "
                "does so) or start the daemon with --import-dir DIR and put the file there",
            )
        try:
            fd = os.open(os.path.expanduser(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            why = "it is a symbolic link" if e.errno == errno.ELOOP else (e.strerror or str(e.errno))
            raise HostPathRefused(path=path, why=f"cannot open the {what}: {why}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise HostPathRefused(path=path, why=f"the {what} is not a regular file")
            real = os.readlink(f"/proc/self/fd/{fd}")
            if not self.anywhere and not any(real.startswith(d.rstrip("/") + "/") for d in self.dirs):
                raise HostPathRefused(
                    path=path,
                    why=f"the {what} is not inside the import directory ({self.describe()}); "
                    "copy it there or upload it",
                )
            os.set_blocking(fd, True)
            return HostFile(path, fd, st.st_size)
        except BaseException:
            os.close(fd)
            raise


# ---- disk images ----------------------------------------------------------------------------


def _refuse_external_by_header(hf: HostFile) -> None:
    head = os.pread(hf.fd, 1024, 0)
    if head[:4] == _QCOW2_MAGIC and len(head) >= 80:
        version, backing_offset = struct.unpack(">IQ", head[4:16])
        if backing_offset:
            raise BadImage(
                path=hf.path,
                detail="it is a qcow2 with a backing file (another host file); flatten it first "
                "(`qemu-img convert -O qcow2 IMAGE FLAT`)",
            )
        if version >= 3 and struct.unpack(">Q", head[72:80])[0] & _QCOW2_EXTERNAL_DATA:
            raise BadImage(
                path=hf.path,
                detail="it is a qcow2 whose data lives in an external data file (another host file); "
                "convert it to a self-contained image first (`qemu-img convert -O qcow2 IMAGE FLAT`)",
            )
    text = head.lstrip()
    if head[:4] != _VMDK_SPARSE_MAGIC and (
        text.startswith(b"# Disk DescriptorFile") or b"createType" in head and b"RW " in head
    ):
        raise BadImage(
            path=hf.path,
            detail="it is a VMDK descriptor: its extents are separate host files, which Coppice "
            "does not open; give a single-file VMDK (monolithicSparse or streamOptimized) or "
            "convert it (`qemu-img convert -O qcow2 DESCRIPTOR FLAT`) where its extents are",
        )


def _refuse_external_by_info(hf: HostFile, info: dict) -> None:
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise BadImage(path=hf.path, detail="it has a backing file; flatten it first")
    data = (info.get("format-specific") or {}).get("data") or {}
    if data.get("data-file"):
        raise BadImage(path=hf.path, detail="it has an external data file; convert it first")
    for ext in data.get("extents") or []:
        if ext.get("filename") not in (None, hf.fd_path, info.get("filename")):
            raise BadImage(path=hf.path, detail="a VMDK extent is another host file; convert it first")


def probe_image(hf: HostFile) -> dict:
    """``qemu-img info`` of the opened image, external references refused; see the docstring."""
    if shutil.which("qemu-img") is None:
        raise BadImage(path=hf.path, detail="qemu-img is not installed (Debian package qemu-utils)")
    _refuse_external_by_header(hf)
    r = subprocess.run(
        ["qemu-img", "info", "--output=json", hf.fd_path],
        capture_output=True,
        text=True,
        pass_fds=(hf.fd,),
    )
    if r.returncode != 0:
        log.warning("qemu-img info %s: %s", hf.path, r.stderr.strip()[:2000])
        raise BadImage(
            path=hf.path, detail="qemu-img cannot read it as a disk image (the daemon log has why)"
        )
    info = json.loads(r.stdout)
    if info.get("format") not in IMAGE_FORMATS:
        raise BadImage(
            path=hf.path,
            detail=f"its format {str(info.get('format'))[:40]!r} is not one Coppice imports "
            f"({', '.join(IMAGE_FORMATS)}); convert it with qemu-img",
        )
    _refuse_external_by_info(hf, info)
    return info


def convert_to_raw(hf: HostFile, fmt: str, out: str) -> None:
    """The opened image as a raw file ``out``, its format given (never probed again)."""
    r = subprocess.run(
        ["qemu-img", "convert", "-f", fmt, "-O", "raw", hf.fd_path, out],
        capture_output=True,
        text=True,
        pass_fds=(hf.fd,),
    )
    if r.returncode != 0:
        log.warning("qemu-img convert %s: %s", hf.path, r.stderr.strip()[:2000])
        raise BadImage(path=hf.path, detail="qemu-img convert failed (the daemon log has why)")


# ---- uploads --------------------------------------------------------------------------------


_BLOCK = 4096
_ZEROS = bytes(_BLOCK)


def _write_sparse(fd: int, data: bytes, off: int) -> int:
    """Write ``data`` at ``off``, leaving all-zero 4 KiB blocks as holes (an uploaded
    disk image stays as thin as the client's); returns the new end."""
    view = memoryview(data)
    i = 0
    while i < len(view):
        n = min(len(view) - i, _BLOCK - (off + i) % _BLOCK)
        piece = view[i : i + n]
        if piece != _ZEROS[:n]:
            while piece:
                piece = piece[os.pwrite(fd, piece, off + i + (n - len(piece))) :]
        i += n
    return off + len(view)


class UploadArea:
    """Files clients upload for a later request to name (``<state_dir>/uploads``, 0700).

    ``receive(filename, chunks)`` stores one upload under a fresh random
    directory and returns its path; ``discard(path)`` removes an upload once
    the request that named it is done."""

    def __init__(self, state_dir: str):
        self.dir = os.path.join(os.path.abspath(state_dir), "uploads")

    def _prepare(self, filename: str) -> str:
        if (
            not filename
            or "/" in filename
            or filename in (".", "..")
            or "\0" in filename
            or len(filename) > 200
        ):
            raise HostPathRefused(path=str(filename)[:200], why="an upload's name is a plain file name")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)
        d = os.path.join(self.dir, secrets.token_hex(8))
        os.mkdir(d, 0o700)
        return os.path.join(d, filename)

    async def receive(self, filename: str, chunks) -> str:
        path = self._prepare(filename)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            size = 0
            async for chunk in chunks:
                size = _write_sparse(fd, chunk, size)
            os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            self.discard(path)
            raise
        os.close(fd)
        return path

    def owns(self, path) -> bool:
        return isinstance(path, str) and os.path.realpath(path).startswith(os.path.realpath(self.dir) + "/")

    def discard(self, path) -> None:
        if self.owns(path):
            shutil.rmtree(os.path.dirname(os.path.realpath(path)), ignore_errors=True)


# ---- the daemon's policy ----------------------------------------------------------------------


def default_state_dir(filer) -> str:
    """Where the provisioner keeps a pool's host-side state (uploads, serial
    logs, kernels): beside the pool directory."""
    return os.path.abspath(filer.path) + ".provision"


def install(state, filer, import_dir: str | None) -> None:
    """Give an API app's ``state`` its upload area and import policy: host files
    from ``import_dir`` (the daemon's --import-dir) and from uploads, nothing else."""

    if import_dir is not None and not os.path.isdir(import_dir):
        from ..errors import InvalidArgument

        raise InvalidArgument(detail=f"--import-dir {import_dir!r} is not a directory")
    state.uploads = UploadArea(default_state_dir(filer))
    state.import_policy = ImportPolicy([d for d in (import_dir, state.uploads.dir) if d])


def policy_of(state) -> tuple[ImportPolicy, UploadArea]:
    """The app's (policy, upload area); an app the daemon did not set up accepts uploads only."""
    if getattr(state, "import_policy", None) is None:
        install(state, state.filer, None)
    return state.import_policy, state.uploads
