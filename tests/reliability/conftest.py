"""Fixtures for the reliability suite: small real file systems to fill."""

import os
import shutil
import subprocess
import tempfile

import pytest


class SmallFS:
    """A tmpfs of a few MiB mounted for one test (needs root, as CI has)."""

    def __init__(self, size_mib: int):
        if os.geteuid() != 0:
            pytest.fail("the full-disk tests mount a small tmpfs and need root (CI runs as root)")
        self.path = tempfile.mkdtemp(prefix="coppice-smallfs-")
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", self.path], check=True
        )

    def resize(self, size_mib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size_mib}m", self.path], check=True)

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, name: str = "filler", leave: int = 0) -> str:
        """A file taking all free space but ``leave`` bytes."""
        path = os.path.join(self.path, name)
        with open(path, "ab") as f:
            chunk = bytes(64 << 10)
            while self.free_bytes() > leave:
                try:
                    f.write(chunk[: max(4096, min(len(chunk), self.free_bytes() - leave))])
                    f.flush()
                except OSError:
                    break
        return path

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", self.path], check=False)
        shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture
def small_fs():
    made = []

    def make(size_mib: int) -> SmallFS:
        fs = SmallFS(size_mib)
        made.append(fs)
        return fs

    yield make
    for fs in made:
        fs.unmount()
