"""Data modules and transforms: digits, Fashion-MNIST, image folders and a synthetic set."""

from .datasets import IMAGE_EXTENSIONS, ArrayImageDataset, ImageFileDataset
from .digits import DIGITS_BASE_RESOLUTION, DigitsSource
from .download import download_file
from .factory import DATASET_NAMES, create_datamodule, create_source, list_datasets
from .fashion_mnist import (
    FASHION_MNIST_BASE_RESOLUTION,
    FASHION_MNIST_CLASSES,
    FashionMNISTSource,
    download_fashion_mnist,
    load_fashion_mnist_arrays,
)
from .idx import read_idx, write_idx
from .image_folder import IMAGE_FOLDER_BASE_RESOLUTION, ImageFolderSource
from .modules import ClassificationDataModule, default_num_workers, usable_cores
from .shards import ShardSource, ShardWriter, is_shard_folder, write_shards
from .source import DataSource, Splits
from .splits import stratified_split, stratified_subset
from .synthetic import SyntheticSource
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_resize_size,
    eval_transform,
    train_transform,
)

__all__ = [
    "ArrayImageDataset",
    "ClassificationDataModule",
    "DATASET_NAMES",
    "DIGITS_BASE_RESOLUTION",
    "DataSource",
    "DigitsSource",
    "FASHION_MNIST_BASE_RESOLUTION",
    "FASHION_MNIST_CLASSES",
    "FashionMNISTSource",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "IMAGE_FOLDER_BASE_RESOLUTION",
    "ImageFileDataset",
    "ImageFolderSource",
    "ShardSource",
    "ShardWriter",
    "Splits",
    "SyntheticSource",
    "create_datamodule",
    "create_source",
    "default_num_workers",
    "download_fashion_mnist",
    "download_file",
    "eval_resize_size",
    "eval_transform",
    "is_shard_folder",
    "list_datasets",
    "load_fashion_mnist_arrays",
    "read_idx",
    "stratified_split",
    "stratified_subset",
    "train_transform",
    "usable_cores",
    "write_idx",
    "write_shards",
]
