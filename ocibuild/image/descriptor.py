"""Content descriptors: what a manifest or index says about a blob it points to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ocibuild.digest import Digest
from ocibuild.errors import ContentError
from ocibuild.image.platform import Platform


@dataclass(frozen=True)
class Descriptor:
    """``mediaType`` + ``digest`` + ``size`` and the optional fields of an OCI descriptor.

    ``annotations`` is a sorted tuple of pairs so that descriptors stay hashable values; read it
    as a dict with ``dict(d.annotations)``.
    """

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None
    data: str | None = None  # base64 embedded content, kept as written

    @classmethod
    def of(
        cls,
        media_type: str,
        digest: Digest,
        size: int,
        *,
        platform: Platform | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Convenience constructor taking annotations as a mapping."""
        return cls(media_type, digest, size, platform, tuple(sorted((annotations or {}).items())))

    def with_annotations(self, annotations: Mapping[str, str]) -> Descriptor:
        """A copy whose annotations are ``annotations`` merged over the existing ones."""
        merged = dict(self.annotations)
        merged.update(annotations)
        return Descriptor(
            self.media_type,
            self.digest,
            self.size,
            self.platform,
            tuple(sorted(merged.items())),
            self.urls,
            self.artifact_type,
            self.data,
        )

    def with_platform(self, platform: Platform | None) -> Descriptor:
        return Descriptor(
            self.media_type,
            self.digest,
            self.size,
            platform,
            self.annotations,
            self.urls,
            self.artifact_type,
            self.data,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object, fields in the order of Go's ``ocispec.Descriptor``."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.data is not None:
            out["data"] = self.data
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str = "descriptor") -> Descriptor:
        """Parse and validate; ContentError names ``where`` (e.g. ``manifest layers[2]``)."""
        if not isinstance(obj, Mapping):
            raise ContentError(f"{where}: want an object")
        try:
            media_type = obj.get("mediaType", "")
            size = obj["size"]
            if not isinstance(media_type, str):
                raise ContentError("mediaType is not a string")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ContentError(f"invalid size {size!r}")
            digest = Digest.parse(str(obj["digest"]))
            platform = obj.get("platform")
            annotations = obj.get("annotations") or {}
            if not isinstance(annotations, Mapping) or not all(
                isinstance(v, str) for v in annotations.values()
            ):
                raise ContentError("annotations must map strings to strings")
            urls = obj.get("urls") or ()
            return cls(
                media_type=media_type,
                digest=digest,
                size=size,
                platform=Platform.from_json(platform) if isinstance(platform, Mapping) else None,
                annotations=tuple(sorted(annotations.items())),
                urls=tuple(str(u) for u in urls),
                artifact_type=obj.get("artifactType"),
                data=obj.get("data"),
            )
        except KeyError as exc:
            raise ContentError(f"{where}: missing field {exc.args[0]!r}") from exc
        except ContentError as exc:
            raise ContentError(f"{where}: {exc.message}") from exc

