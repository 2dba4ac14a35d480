import pytest

from tmics_cli.video.encoders import HARDWARE_ENCODERS, hardware_encoders

av = pytest.importorskip("av")


def test_hardware_encoders_are_what_the_build_has_and_a_probe_never_raises() -> None:
    listed = hardware_encoders()
    assert [e.name for e in listed] == list(HARDWARE_ENCODERS)
    for e in listed:
        assert e.works is None
        if e.built:
            assert e.name in av.codecs_available
    for e in hardware_encoders(probe=True):
        assert e.works is None if not e.built else isinstance(e.works, bool)
        assert e.works is not False or e.why  # a failure says why
        assert e.name in str(e)
