"""The declared observation layout has SONIC's widths and consistent offsets."""

import pytest

from gear_sonic import layout


@pytest.mark.parametrize(
    "name,width",
    [("proprioception", 930), ("g1", 640), ("teleop", 267), ("smpl", 840), ("soma", 900), ("critic", 1645)],
)
def test_group_widths(name, width):
    group = layout.group(name)
    assert group.width == width
    described = group.describe()
    assert described[0]["offset"] == 0
    assert described[-1]["offset"] + described[-1]["width"] == width
    for term in described:
        assert group.slice(term["name"]).stop - group.slice(term["name"]).start == term["width"]


def test_onnx_widths():
    assert layout.DECODER_INPUT_WIDTH == 994
    assert layout.encoder_union_width(layout.ENCODER_NAMES_RELEASE) == 1751


def test_unknown_names_raise():
    with pytest.raises(KeyError, match="unknown observation group"):
        layout.group("vision")
    with pytest.raises(KeyError, match="has no term"):
        layout.group("g1").term("nope")
