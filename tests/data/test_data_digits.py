import json

import numpy as np
import pytest
import torch

from aerobust.data import DATASETS, Dataset, load_dataset
from aerobust.data.digits import load_digits, stratified_split
from aerobust.errors import DataError, UserError


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def test_shapes_types_and_range(digits: Dataset) -> None:
    assert digits.x_train.shape == (1437, 1, 28, 28)
    assert digits.x_test.shape == (360, 1, 28, 28)
    for x in (digits.x_train, digits.x_test):
        assert x.dtype == torch.float32 and x.is_contiguous()
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert float(x.max()) > 0.9  # real strokes, not a blank image
    assert digits.y_train.dtype == torch.int64
    assert (digits.num_classes, digits.channels, digits.image_size) == (10, 1, 28)
    assert digits.checksum.startswith("sha256:") and len(digits.checksum) == 7 + 64


def test_split_is_deterministic_and_stratified(digits: Dataset) -> None:
    again = load_dataset("digits", data_dir="/nonexistent/ignored")
    assert again.checksum == digits.checksum
    assert torch.equal(again.x_test, digits.x_test) and torch.equal(again.y_train, digits.y_train)
    test_counts = torch.bincount(digits.y_test, minlength=10)
    total = test_counts + torch.bincount(digits.y_train, minlength=10)
    assert int(total.sum()) == 1797
    assert torch.all((test_counts.double() - total.double() * 360 / 1797).abs() < 1)


def test_stratified_split_partitions_exactly() -> None:
    y = np.repeat(np.arange(3), [10, 7, 5])
    train, test = stratified_split(y, 6, seed=0)
    assert len(test) == 6 and len(train) == 16
    assert np.intersect1d(train, test).size == 0
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(22))
    assert np.array_equal(test, stratified_split(y, 6, seed=0)[1])


def test_info_is_json_able(digits: Dataset) -> None:
    info = digits.info()
    assert json.loads(json.dumps(info)) == info
    assert info["n_train"] == 1437 and info["shape"] == [1, 28, 28]
    assert sum(info["class_counts"]["test"]) == 360


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UserError) as e:
        load_dataset("imagenet")
    assert not isinstance(e.value, DataError)
    for name in (*DATASETS, "npz:PATH"):
        assert name in str(e.value)
    with pytest.raises(UserError, match="needs a path"):
        load_dataset("npz:")


def test_dataset_rejects_wrong_types() -> None:
    x, y = torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64)
    ds = Dataset("t", x, y, x, y, 2, "sha256:0")
    assert ds == ds and ds != Dataset("t", x, y, x, y, 2, "sha256:0")  # identity, no tensor eq
    with pytest.raises(ValueError, match="float32"):
        Dataset("t", x.double(), y, x, y, 2, "sha256:0")
    with pytest.raises(ValueError, match="int64"):
        Dataset("t", x, y[:1], x, y, 2, "sha256:0")
    with pytest.raises(ValueError, match="differ"):
        Dataset("t", x, y, torch.zeros(2, 3, 4, 4), y, 2, "sha256:0")
