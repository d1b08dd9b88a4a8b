"""Content-addressed asset store with atomic writes.

Files live at `<root>/<sha[:2]>/<sha><suffix>`; a file is only ever visible complete
(written to a temporary name in the same directory, fsynced, then renamed).
"""

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def current_umask() -> int:
    """The process umask, read without changing it (Linux /proc), else set-and-restore."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` only if the block succeeds.

    The file gets the mode a plain `open(dest, "w")` would give (0666 minus the umask), not
    mkstemp's private 0600: a video must be readable by whoever the umask lets read it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.stem}.", suffix=f".part{dest.suffix}", dir=dest.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(dest: Path, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: Path, text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_copy(src: Path, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


class AssetStore:
    """Immutable blobs addressed by sha256; `put` is idempotent."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, sha: str, suffix: str = "") -> Path:
        return self.root / sha[:2] / f"{sha}{suffix}"

    def has(self, sha: str, suffix: str = "") -> bool:
        return self.path_for(sha, suffix).is_file()

    def put_file(self, src: Path) -> tuple[str, Path]:
        """Store `src`; a blob already there is kept only if it still has its hash (a damaged
        one is replaced, never handed out again)."""
        src = Path(src)
        sha = sha256_file(src)
        dest = self.path_for(sha, src.suffix)
        if not self.verify(sha, src.suffix):
            atomic_copy(src, dest)
        return sha, dest

    def put_bytes(self, data: bytes, suffix: str = "") -> tuple[str, Path]:
        sha = sha256_bytes(data)
        dest = self.path_for(sha, suffix)
        if not self.verify(sha, suffix):
            atomic_write_bytes(dest, data)
        return sha, dest

    def verify(self, sha: str, suffix: str = "") -> bool:
        p = self.path_for(sha, suffix)
        return p.is_file() and sha256_file(p) == sha
