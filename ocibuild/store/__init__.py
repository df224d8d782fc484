"""The content store: verified blobs, unpacked-layer snapshots, cache dirs and gc.

See ``ocibuild.store.blobs`` for the blob contract and ``ocibuild.store.gc`` for what prune
removes. Services take a ``BlobStore`` explicitly; nothing here is a module global.
"""

from ocibuild.store.blobs import BlobStore, BlobWriter, VerifyingReader, default_root

__all__ = ["BlobStore", "BlobWriter", "VerifyingReader", "default_root"]
