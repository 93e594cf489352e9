"""Datasets as whole tensors: x (N,C,H,W) float32 in [0,1], y (N,) int64.

``load_dataset("digits")`` works offline; "mnist" and "cifar10" read the official files
from a data folder (see ``download``); "npz:PATH" loads your own data.
"""

from aerobust.data.augment import random_crop_flip
from aerobust.data.dataset import Dataset
from aerobust.data.fetch import download
from aerobust.data.registry import DATASETS, load_dataset
from aerobust.data.sources import default_data_dir

__all__ = [
    "DATASETS",
    "Dataset",
    "default_data_dir",
    "download",
    "load_dataset",
    "random_crop_flip",
]
