import numpy as np
import pytest
import torch

from ddd_support.data import cifar as data
from ddd_support.data.cifar import (CLASSES, CifarArrays, channel_stats, load_cifar10, normalize,
                              stratified_indices, to_float_tensor)
from ddd_support.errors import DataError

from tests.conftest import SHARED_CIFAR, write_image_folder


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DDD_CACHE_DIR", str(tmp_path / "cache"))


def test_image_folder_is_read_with_cifar_class_indices(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=2)
    arrays = load_cifar10(root, "imagefolder", progress=False)
    assert arrays.x_train.shape == (20, 32, 32, 3) and arrays.x_train.dtype == np.uint8
    assert list(arrays.y_train) == [c for c in range(10) for _ in range(2)]
    assert arrays.x_test.shape == (20, 32, 32, 3)


def test_auto_source_recognises_an_image_folder_from_the_environment(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "imgs", per_class=1)
    monkeypatch.setenv("DDD_DATA_ROOT", str(root))
    assert load_cifar10(progress=False).source == "imagefolder"


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "imgs", per_class=1)
    first = load_cifar10(root, progress=False)

    def no_decoding(*args, **kwargs):
        raise AssertionError("images decoded again")

    monkeypatch.setattr(data, "_read_imagefolder", no_decoding)
    second = load_cifar10(root, progress=False)
    assert np.array_equal(first.x_train, second.x_train)
    assert not any((root / "train").glob("*.npz")), "cache must live outside the source folder"


def test_missing_folder_error_names_both_sources(tmp_path):
    with pytest.raises(DataError, match="image-folder.*torchvision"):
        load_cifar10(tmp_path / "nothing", "imagefolder", progress=False)
    with pytest.raises(DataError, match="image-folder.*torchvision"):
        load_cifar10(tmp_path / "nothing", "torchvision", download=False, progress=False)


def test_folder_with_wrong_classes_is_rejected(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=1, classes=("cats", "dogs"))
    with pytest.raises(DataError, match="expected"):
        load_cifar10(root, "imagefolder", progress=False)


def test_images_of_wrong_size_are_rejected(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=1, size=16)
    with pytest.raises(DataError, match="expected 32x32"):
        load_cifar10(root, "imagefolder", progress=False)


def test_undecodable_file_is_named(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=1)
    (root / "train" / "cat" / "0000.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="0000.png"):
        load_cifar10(root, "imagefolder", progress=False)


def test_stratified_subset_is_balanced_seeded_and_sorted():
    labels = np.repeat(np.arange(10), 50)
    a = stratified_indices(labels, 105, seed=0)
    assert len(a) == 105 and np.all(np.diff(a) > 0)
    counts = np.bincount(labels[a], minlength=10)
    assert counts.min() == 10 and counts.max() == 11
    assert np.array_equal(a, stratified_indices(labels, 105, seed=0))
    assert not np.array_equal(a, stratified_indices(labels, 105, seed=1))


def test_normalisation_gives_zero_mean_unit_std_per_channel():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 32, 32, 3), dtype=np.uint8)
    mean, std = channel_stats(images)
    x = normalize(to_float_tensor(images), mean, std).view(50, 3, -1)
    assert torch.allclose(x.mean(dim=(0, 2)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2)), torch.ones(3), atol=1e-3)


def test_flattening_is_channel_major_like_to_tensor():
    images = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    images[0, 0, 1, 2] = 255  # row 0, column 1, blue channel
    flat = to_float_tensor(images)
    assert flat[0, 2 * 1024 + 0 * 32 + 1] == 1.0 and flat.sum() == 1.0


def test_arrays_of_wrong_shape_are_rejected():
    with pytest.raises(DataError):
        CifarArrays(np.zeros((2, 28, 28, 3), np.uint8), np.zeros(2, int),
                    np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, int), "x")


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason="shared CIFAR-10 image folder not present")
def test_shared_cifar10_image_folder_loads_completely(monkeypatch):
    monkeypatch.delenv("DDD_CACHE_DIR")  # share the user cache: decoding 60k images once is enough
    arrays = load_cifar10(SHARED_CIFAR, "imagefolder", progress=False)
    assert arrays.x_train.shape == (50000, 32, 32, 3) and arrays.x_test.shape == (10000, 32, 32, 3)
    assert np.array_equal(np.bincount(arrays.y_train), np.full(10, 5000))
    assert np.array_equal(np.bincount(arrays.y_test), np.full(10, 1000))
    assert len(CLASSES) == 10


def test_swapped_class_folders_are_decoded_again_not_read_from_the_cache(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=2)
    before = load_cifar10(root, "imagefolder", progress=False)
    cat, dog = CLASSES.index("cat"), CLASSES.index("dog")
    (root / "train" / "cat").rename(root / "train" / "tmp")
    (root / "train" / "dog").rename(root / "train" / "cat")
    (root / "train" / "tmp").rename(root / "train" / "dog")
    after = load_cifar10(root, "imagefolder", progress=False)
    assert np.array_equal(after.x_train[after.y_train == cat], before.x_train[before.y_train == dog])
    assert np.array_equal(after.x_train[after.y_train == dog], before.x_train[before.y_train == cat])


def test_a_deleted_class_folder_is_noticed_after_caching(tmp_path):
    import shutil

    root = write_image_folder(tmp_path / "imgs", per_class=1)
    load_cifar10(root, "imagefolder", progress=False)
    shutil.rmtree(root / "train" / "frog")
    with pytest.raises(DataError, match="class folders"):
        load_cifar10(root, "imagefolder", progress=False)


def test_a_truncated_image_is_noticed_after_caching(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=1)
    load_cifar10(root, "imagefolder", progress=False)
    image = root / "train" / "cat" / "0000.png"
    image.write_bytes(image.read_bytes()[:200])
    with pytest.raises(DataError, match="cannot decode .*0000.png"):
        load_cifar10(root, "imagefolder", progress=False)


def test_an_unchanged_folder_is_read_from_its_cache(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "imgs", per_class=1)
    load_cifar10(root, "imagefolder", progress=False)
    monkeypatch.setattr(data, "_read_imagefolder", lambda *a, **k: pytest.fail("decoded again"))
    load_cifar10(root, "imagefolder", progress=False)


def test_temp_files_of_an_interrupted_cache_write_are_removed(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=1)
    load_cifar10(root, "imagefolder", progress=False)
    [cache] = (tmp_path / "cache").glob("cifar10-*.npz")
    stale = cache.parent / f".{cache.name}.x7k2q.tmp"
    stale.write_bytes(b"part of a cache")
    load_cifar10(root, "imagefolder", progress=False)
    assert not stale.exists()


def test_a_cache_that_cannot_be_written_only_warns(tmp_path, monkeypatch):
    import errno

    root = write_image_folder(tmp_path / "imgs", per_class=1)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(data, "atomic_savez", disk_full)
    with pytest.warns(UserWarning, match="could not write the data cache .*No space left.*continuing"):
        arrays = load_cifar10(root, "imagefolder", progress=False)
    assert arrays.x_train.shape == (10, 32, 32, 3)
