import pytest
import torch

from helpers import models


@pytest.mark.parametrize("layers", [3, 4, 5, 6])
def test_fcn_blocks_and_shapes(layers):
    model = models.fcn(layers)
    assert len(model) == layers  # hidden blocks + the output layer, as the paper counts depth
    h = torch.rand(8, 1, 28, 28)
    for block in model[:-1]:
        assert [type(m).__name__ for m in block if type(m).__name__ != "Flatten"] == ["Linear", "BatchNorm1d", "ReLU"]
        h = block(h)
        assert h.shape == (8, 256)
    assert model[-1](h).shape == (8, 10)


@pytest.mark.parametrize("layers,image,channels", [(3, 28, 1), (4, 32, 3)])
def test_cnn_blocks_and_shapes(layers, image, channels):
    model = models.cnn(layers, channels=16, in_channels=channels, image_size=image)
    assert len(model) == layers
    assert isinstance(model[0][-1], torch.nn.MaxPool2d) and isinstance(model[1][-1], torch.nn.AvgPool2d)
    assert model[0][0].kernel_size == (5, 5)
    h = model[0](torch.rand(2, channels, image, image))
    assert h.shape == (2, 16, (image + 1) // 2, (image + 1) // 2)
    assert model(torch.rand(2, channels, image, image)).shape == (2, 10)


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, "3", True])
def test_bad_depth_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="layers must be an int >= 2"):
        models.fcn(bad)
    with pytest.raises(ValueError, match="layers must be an int >= 2"):
        models.cnn(bad)


def test_bad_widths_are_clear_errors():
    with pytest.raises(ValueError, match="hidden"):
        models.fcn(3, hidden=0)
    with pytest.raises(ValueError, match="channels"):
        models.cnn(3, channels=0)
