"""What each dataset is: its files, their official SHA-256 sums and sizes, class names and mirrors.

Both datasets ship as the same four gzip-compressed IDX files. The sums and byte sizes are those
of the official `.gz` files, so a copy from any mirror (or a local folder) is checked against them,
and a mirror that sends more bytes than the official file has is cut off at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlknobs.config import DATASET_NAMES

SPLIT_FILES = {
    # split: (images file, labels file)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    sha256: dict[str, str]          # official file name -> SHA-256 of the .gz
    sizes: dict[str, int]           # official file name -> byte size of the .gz
    class_names: tuple[str, ...]    # index = label
    mirrors: tuple[str, ...]        # built-in base URLs, file name appended directly
    image_shape: tuple[int, int] = (28, 28)

    def __post_init__(self) -> None:
        # The downloader caps every transfer at the file's size, so no file may lack one.
        if set(self.sizes) != set(self.sha256):
            raise ValueError(f"dataset {self.name}: sizes must list the same files as sha256")

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.sha256)


MNIST = DatasetSpec(
    name="mnist",
    sha256={
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    sizes={
        "train-images-idx3-ubyte.gz": 9_912_422,
        "train-labels-idx1-ubyte.gz": 28_881,
        "t10k-images-idx3-ubyte.gz": 1_648_877,
        "t10k-labels-idx1-ubyte.gz": 4_542,
    },
    class_names=tuple(str(d) for d in range(10)),
    # yann.lecun.com has been unreliable since 2024, so it is not listed at all.
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    sha256={
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    sizes={
        "train-images-idx3-ubyte.gz": 26_421_880,
        "train-labels-idx1-ubyte.gz": 29_515,
        "t10k-images-idx3-ubyte.gz": 4_422_102,
        "t10k-labels-idx1-ubyte.gz": 5_148,
    },
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    # Plain HTTP is acceptable here: every byte is checked against the SHA-256 above.
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}
assert tuple(DATASETS) == DATASET_NAMES, "config.DATASET_NAMES must list exactly the datasets in DATASETS"


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise ValueError(f"unknown dataset {name!r} (known: {known})") from None
