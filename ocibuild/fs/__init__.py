"""File systems and layers: tar read/write, compression, unpack, diff, ownership, safe paths.

Plain functions over paths with no global state and no threads left running after they return,
so the sandbox can call them inside a user namespace in a forked child. Entry points:
``write_layer`` (layer.py), ``unpack_layer`` (unpack.py), ``overlay_changes``/``tree_changes``
(diff.py), ``OwnershipRecord`` (ownership.py), ``safe_join`` (safepath.py).
"""

from ocibuild.fs.diff import overlay_changes, tree_changes
from ocibuild.fs.layer import Change, ChangeKind, LayerBlob, write_layer
from ocibuild.fs.ownership import Owner, OwnershipRecord
from ocibuild.fs.safepath import safe_join
from ocibuild.fs.unpack import UnpackResult, unpack_layer

__all__ = [
    "Change",
    "ChangeKind",
    "LayerBlob",
    "Owner",
    "OwnershipRecord",
    "UnpackResult",
    "overlay_changes",
    "safe_join",
    "tree_changes",
    "unpack_layer",
    "write_layer",
]
