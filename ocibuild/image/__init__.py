"""The frozen image model: platforms, descriptors, manifests, indexes, configs, images.

Pure values, no I/O. Bytes that came from elsewhere (manifests, configs) are kept as received;
new ones are serialised the way BuildKit does.
"""

from ocibuild.image.config import History, ImageConfig, canonical_config_bytes, format_time
from ocibuild.image.descriptor import Descriptor
from ocibuild.image.image import (
    Image,
    Layer,
    append,
    build_manifest,
    build_manifest_value,
    chain_ids,
    config_descriptor,
    fill_history_times,
    normalize_history,
)
from ocibuild.image.manifest import MAX_MANIFEST_SIZE, Index, Manifest, parse_manifest
from ocibuild.image.platform import Platform

__all__ = [
    "MAX_MANIFEST_SIZE",
    "Descriptor",
    "History",
    "Image",
    "ImageConfig",
    "Index",
    "Layer",
    "Manifest",
    "Platform",
    "append",
    "build_manifest",
    "build_manifest_value",
    "canonical_config_bytes",
    "chain_ids",
    "config_descriptor",
    "fill_history_times",
    "format_time",
    "normalize_history",
    "parse_manifest",
]
