"""``--output`` parsing, as buildx spells the specs."""

from __future__ import annotations

import pytest

from ocibuild.errors import UsageError
from ocibuild.output.spec import OutputSpec, parse_output, parse_outputs


def test_types_and_defaults() -> None:
    assert parse_output("type=oci,dest=out.tar") == OutputSpec("oci", "out.tar")
    assert parse_output("type=oci,dest=dir,tar=false").tar is False
    docker = parse_output("type=docker,dest=x.tar", ("a:1",))
    # current BuildKit (compatibility version 31): OCI media types for type=docker too
    assert docker.names == ("a:1",) and docker.oci_mediatypes is True
    assert parse_output("type=registry,name=r/a:1").push is True
    assert parse_output("type=image,name=r/a:1,push=true").push is True
    assert parse_output("out") == OutputSpec("local", "out")
    assert parse_output("-") == OutputSpec("tar", "-")


def test_attributes() -> None:
    spec = parse_output('type=image,"name=r/a:1,r/a:2",push=true,compression=zstd,'
                        "compression-level=5,force-compression=true,oci-mediatypes=false,"
                        "annotation.org.example=x")
    assert spec.names == ("r/a:1", "r/a:2") and spec.compression == "zstd"
    assert spec.compression_level == 5 and spec.force_compression and not spec.oci_mediatypes
    assert spec.annotations.manifest() == {"org.example": "x"}


@pytest.mark.parametrize("bad", [
    "type=nope,dest=x", "type=oci", "type=registry",
    "type=oci,dest=x,tar=maybe", "type=image,name=a,push=true,compression=lz4",
])
def test_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_output(bad)


def test_unknown_attributes_are_kept_aside_as_buildkit_ignores_them() -> None:
    spec = parse_output("type=oci,dest=x,bogus=1,oci-artifact=true")
    assert spec.ignored == ("bogus", "oci-artifact")
    assert parse_output("type=oci,dest=x").ignored == ()


def test_rewrite_timestamp_is_an_image_outputs_attribute() -> None:
    assert parse_output("type=oci,dest=x,rewrite-timestamp=true").rewrite_timestamp
    assert parse_output("type=image,name=r/n,rewrite-timestamp=1").rewrite_timestamp
    assert not parse_output("type=docker,dest=x").rewrite_timestamp
    # The filesystem exporters set every time to the epoch anyway.
    assert not parse_output("type=local,dest=x,rewrite-timestamp=true").rewrite_timestamp


def test_tags_win_over_name_and_registry_insecure() -> None:
    """buildx writes -t's names into name= of an image, oci or docker output."""
    spec = parse_output("type=image,name=r/n:1,push=true,registry.insecure=true", ("r/t:1",))
    assert spec.names == ("r/t:1",) and spec.insecure and spec.ignored == ()
    assert parse_output("type=image,name=r/n:1,push=true").names == ("r/n:1",)


def test_push_flag_adds_a_registry_output_for_tags() -> None:
    outs = parse_outputs(("type=oci,dest=x",), ("r/a:1", "r/a:2"), True)
    assert outs[-1] == OutputSpec("registry", names=("r/a:1", "r/a:2"), push=True)
    with pytest.raises(UsageError):
        parse_outputs((), (), True)


def test_source_date_epoch_from_build_arg_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from ocibuild.output.export import source_date_epoch

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date_epoch(SimpleNamespace(build_args={})) == 1700000000
    assert source_date_epoch(SimpleNamespace(build_args={"SOURCE_DATE_EPOCH": "5"})) == 5
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert source_date_epoch(SimpleNamespace(build_args={})) is None
    with pytest.raises(UsageError, match="invalid SOURCE_DATE_EPOCH 'soon'"):
        source_date_epoch(SimpleNamespace(build_args={"SOURCE_DATE_EPOCH": "soon"}))
