"""The image data sets by name, for task configs (``dataset: fashion_mnist``)."""

from __future__ import annotations

from tasks.data import cifar10, fashion_mnist, mnist
from tasks.data.images import ImageSource

SOURCES: dict[str, ImageSource] = {
    source.name: source for source in (fashion_mnist.SOURCE, mnist.SOURCE, cifar10.SOURCE)
}


def get_source(name: str) -> ImageSource:
    """The data set called ``name``, or a ValueError listing the known ones."""
    if name not in SOURCES:
        raise ValueError(f"dataset={name!r}: expected one of {sorted(SOURCES)}")
    return SOURCES[name]
