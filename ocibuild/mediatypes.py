"""Media types of the OCI image spec and of Docker's v2 schema 2, and how they pair up.

Only constants and small pure lookups live here; parsing is in ``ocibuild.image``.
"""

from __future__ import annotations

# OCI image spec
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_VERSION = "1.0.0"

# Docker image manifest v2, schema 2
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
# Schema 1 is long dead; recognised only to name it in an error.
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFESTS = IMAGE_MANIFESTS | INDEXES
CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG})

#: The ``Accept`` header value for fetching any manifest we understand, most preferred first.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

_LAYER_COMPRESSION = {
    OCI_LAYER: "none",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDIST: "none",
    OCI_LAYER_NONDIST_GZIP: "gzip",
    OCI_LAYER_NONDIST_ZSTD: "zstd",
    DOCKER_LAYER: "none",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_ZSTD: "zstd",
    DOCKER_FOREIGN_LAYER_GZIP: "gzip",
}

_OCI_TO_DOCKER = {
    OCI_MANIFEST: DOCKER_MANIFEST,
    OCI_INDEX: DOCKER_MANIFEST_LIST,
    OCI_CONFIG: DOCKER_CONFIG,
    OCI_LAYER: DOCKER_LAYER,
    OCI_LAYER_GZIP: DOCKER_LAYER_GZIP,
    # Docker has no registered zstd layer type; BuildKit and containerd keep the OCI one.
    OCI_LAYER_ZSTD: OCI_LAYER_ZSTD,
    OCI_LAYER_NONDIST_GZIP: DOCKER_FOREIGN_LAYER_GZIP,
}
_DOCKER_TO_OCI = {
    DOCKER_MANIFEST: OCI_MANIFEST,
    DOCKER_MANIFEST_LIST: OCI_INDEX,
    DOCKER_CONFIG: OCI_CONFIG,
    DOCKER_LAYER: OCI_LAYER,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_LAYER_ZSTD: OCI_LAYER_ZSTD,
    DOCKER_FOREIGN_LAYER_GZIP: OCI_LAYER_NONDIST_GZIP,
}


def is_layer(media_type: str) -> bool:
    """True for every tar layer media type, OCI or Docker, any compression."""
    return media_type in _LAYER_COMPRESSION


def layer_compression(media_type: str) -> str:
    """``"none"``, ``"gzip"`` or ``"zstd"`` for a layer media type; KeyError for a non-layer."""
    return _LAYER_COMPRESSION[media_type]


def layer_media_type(compression: str, *, oci: bool = True) -> str:
    """The layer media type for ``compression`` (``none``/``uncompressed``, ``gzip``, ``zstd``)."""
    table = {
        "none": (OCI_LAYER, DOCKER_LAYER),
        "uncompressed": (OCI_LAYER, DOCKER_LAYER),
        "gzip": (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP),
        "zstd": (OCI_LAYER_ZSTD, OCI_LAYER_ZSTD),
    }
    pair = table[compression]
    return pair[0] if oci else pair[1]


def to_docker(media_type: str) -> str:
    """The Docker v2 equivalent of an OCI media type; unknown types are returned unchanged."""
    return _OCI_TO_DOCKER.get(media_type, media_type)


def to_oci(media_type: str) -> str:
    """The OCI equivalent of a Docker v2 media type; unknown types are returned unchanged."""
    return _DOCKER_TO_OCI.get(media_type, media_type)
