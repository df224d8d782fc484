"""zstd through the standard library's API: ``compression.zstd`` from Python 3.14, and
before it ``backports.zstd``, the same module backported, which pyzstd (the zstd dependency
we chose) is built on since 0.19.

Imported here rather than through pyzstd because pyzstd's own import costs ~35 ms more (its
``typing_extensions.deprecated`` decorators import asyncio), and every process that
compresses pays it: each commit's forked compressing child (``fs.forked``) included, on the
step's critical path. This one costs ~1.5 ms. The bytes are the same: pyzstd 0.19+ calls this
very module."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 14):
    from compression.zstd import CompressionParameter, ZstdCompressor, ZstdError, ZstdFile
else:
    from backports.zstd import CompressionParameter, ZstdCompressor, ZstdError, ZstdFile

__all__ = ["CompressionParameter", "ZstdCompressor", "ZstdError", "ZstdFile"]
