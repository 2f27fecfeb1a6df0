"""Object files mapped side by side into one buffer, without copying (Linux, macOS).

A large array is stored as many chunk objects; restoring it needs one
contiguous buffer.  Copying the chunks into fresh memory costs a first
touch of every page, which on some machines (virtual machines backing guest
memory lazily) is slower than the disk: restoring 1.5 GB took 3.4 s, of
which 2.9 s went to page allocation, where ``load_module`` maps its file
and takes 0.3 s.  So, as ``load_module`` maps a container's blobs, a
restore maps each chunk's file at its place in one reserved region:
``mmap(MAP_FIXED | MAP_PRIVATE)`` over an anonymous reservation that a
Python ``mmap`` object owns.  Freeing that object unmaps the whole region,
chunk mappings included.  Pages stay the page cache's until written
(copy-on-write), exactly like a container's mapped blobs.

Python's mmap module cannot place a mapping, so libc's ``mmap`` is called
through ctypes (imported only here, only when a restore maps something).
Where that is unavailable (Windows, 32-bit) or fails, the caller copies.
"""

from __future__ import annotations

import mmap as _mmap
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

PAGE = _mmap.PAGESIZE
_MAP_FIXED = 0x10  # the same on Linux, macOS and the BSDs
_PROT = _mmap.PROT_READ | _mmap.PROT_WRITE
#: at most this many chunk mappings in one region (Linux allows 65530 per process by default)
MAX_MAPS = 4096

_libc_mmap: Any = None


def _mmap_function() -> Any:
    """libc's mmap(2) through ctypes, or None where this module cannot use it."""
    global _libc_mmap
    if _libc_mmap is None:
        _libc_mmap = False
        if sys.platform in ("linux", "darwin") and sys.maxsize > 2**32:
            try:
                import ctypes

                function = ctypes.CDLL(None, use_errno=True).mmap
            except (ImportError, OSError, AttributeError):
                return None
            function.restype = ctypes.c_void_p
            function.argtypes = [
                ctypes.c_void_p,
                ctypes.c_size_t,
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_int64,  # off_t: 64 bits on both 64-bit platforms
            ]
            _libc_mmap = function
    return _libc_mmap or None


def available() -> bool:
    return _mmap_function() is not None


def round_up(size: int) -> int:
    return -(-size // PAGE) * PAGE


class Region:
    """``size`` bytes of reserved address space that object files can be mapped into.

    ``view`` is a writable memoryview of exactly ``size`` bytes; parts not
    mapped from a file are ordinary private memory, to be filled by copying.
    """

    def __init__(self, size: int) -> None:
        import ctypes

        flags = _mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS
        self.mmap = _mmap.mmap(-1, max(round_up(size), PAGE), flags=flags)
        holder = ctypes.c_char.from_buffer(self.mmap)
        self.base = ctypes.addressof(holder)
        del holder  # the region exports no buffer to ctypes any more
        self.size = size
        self.maps = 0
        self.view = memoryview(self.mmap)[:size]

    def can_map(self, at: int, length: int) -> bool:
        """Whether bytes ``at``..``at + length`` can be a file mapping: they
        start on a page, and end on one or at the end of the region."""
        return (
            self.maps < MAX_MAPS
            and at % PAGE == 0
            and length > 0
            and ((at + length) % PAGE == 0 or at + length == self.size)
        )

    def map_file(self, at: int, length: int, fd: int) -> bool:
        """Map the first ``length`` bytes of file ``fd`` at ``at`` (see ``can_map``);
        False if the system refused (the part is then left to copy into)."""
        function = _mmap_function()
        address = self.base + at
        if function is None:
            return False
        if function(address, length, _PROT, _mmap.MAP_PRIVATE | _MAP_FIXED, fd, 0) == address:
            self.maps += 1
            return True
        # A refused MAP_FIXED may have unmapped the range: put private memory back
        # before anything touches it.
        flags = _mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS | _MAP_FIXED
        if function(address, round_up(length), _PROT, flags, -1, 0) != address:
            raise MemoryError("could not restore the memory of a region after a refused mapping")
        return False
