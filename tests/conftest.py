import matplotlib
import pytest

matplotlib.use("Agg")

from helpers import data  # noqa: E402


@pytest.fixture(scope="session")
def mnist():
    """The full MNIST on the CPU (see data/README.md if it is missing)."""
    return data.load_mnist("cpu")


@pytest.fixture(scope="session")
def mnist_small(mnist):
    """2,000 training and 1,000 test examples: enough to see learning in seconds."""
    return data.Dataset("mnist-small", mnist.x_train[:2000], mnist.y_train[:2000],
                        mnist.x_test[:1000], mnist.y_test[:1000])
