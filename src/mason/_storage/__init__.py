"""Where session bytes live: local files now, URLs later (fsspec, imported lazily)."""

from .local import atomic_write, default_session_path, open_for_read

__all__ = ["atomic_write", "default_session_path", "open_for_read"]
