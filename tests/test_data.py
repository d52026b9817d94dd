import pytest
import torch

from helpers import data


def test_mnist_shapes_types_and_ranges(mnist):
    assert mnist.x_train.shape == (60_000, 1, 28, 28) and mnist.x_test.shape == (10_000, 1, 28, 28)
    assert mnist.x_train.dtype == torch.float32 and mnist.y_train.dtype == torch.int64
    assert mnist.x_train.min() == 0.0 and mnist.x_train.max() == 1.0
    assert set(mnist.y_train.unique().tolist()) == set(range(10)) == set(mnist.y_test.unique().tolist())
    assert not mnist.standin and mnist.input_shape == (1, 28, 28)


def test_mnist_is_placed_on_the_requested_device(mnist):
    assert mnist.x_train.device.type == "cpu" and mnist.y_test.device.type == "cpu"
    if torch.cuda.is_available():
        on_gpu = data.load_mnist("cuda")
        assert on_gpu.x_train.is_cuda and on_gpu.y_train.is_cuda


def test_missing_mnist_offline_says_where_and_how(tmp_path):
    with pytest.raises(data.DataNotFoundError) as error:
        data.load_mnist(root=tmp_path, download=False)
    message = str(error.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "gunzip" in message and "train-images-idx3-ubyte" in message


def test_missing_cifar_is_an_error_unless_a_standin_is_allowed(tmp_path, capsys):
    with pytest.raises(data.DataNotFoundError, match="cifar-10-python.tar.gz"):
        data.load_cifar10(root=tmp_path, download=False)
    standin = data.load_cifar10(root=tmp_path, download=False, allow_standin=True)
    assert "STAND-IN" in capsys.readouterr().out
    assert standin.standin and standin.name == "cifar10-standin" and "STAND-IN" in repr(standin)
    assert standin.x_train.shape[1:] == (3, 32, 32) and 0 <= standin.x_train.min() <= standin.x_train.max() <= 1


def test_random_batches_cover_each_epoch_once():
    generator = torch.Generator().manual_seed(0)
    batches = data.random_batches(10, 5, "cpu", generator)
    epoch = torch.cat([next(batches), next(batches)])
    assert sorted(epoch.tolist()) == list(range(10))
    with pytest.raises(ValueError, match="larger than the data set"):
        next(data.random_batches(3, 5, "cpu", generator))


def test_random_crop_flip_returns_padded_crops_some_flipped():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 8, 8)
    out = data.random_crop_flip(x, padding=2)
    padded = torch.nn.functional.pad(x, (2,) * 4)
    kinds = set()
    for i in range(len(x)):
        matches = {(t, l, flipped) for t in range(5) for l in range(5) for flipped in (False, True)
                   if torch.equal(out[i], padded[i, :, t:t + 8, l:l + 8].flip(2) if flipped else
                                  padded[i, :, t:t + 8, l:l + 8])}
        assert matches, f"example {i} is not a crop of its padded image"
        kinds |= {flipped for _, _, flipped in matches}
    assert kinds == {False, True}            # flips happen, and not always
    assert not torch.equal(out, x)
    with pytest.raises(ValueError, match="N, C, H, W"):
        data.random_crop_flip(torch.rand(3, 8, 8))
