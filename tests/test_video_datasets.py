"""KTH / BAIR loaders and the TFRecord codec, on small fixtures written in the real layouts."""
import struct

import numpy as np
import pytest
import torch

from vpstudy.data import tfrecord
from vpstudy.data.errors import DataError
from vpstudy.data.fixtures import (
    BAIR_FIXTURE_SQUARE_RGB,
    KTH_FIXTURE_BACKGROUND,
    KTH_FIXTURE_FOREGROUND,
    bair_fixture_frames,
    write_bair_png_fixture,
    write_bair_tfrecord_fixture,
    write_kth_fixture,
)
from vpstudy.data.video_datasets import (
    BAIRDataset,
    BAIRTFRecordDataset,
    KTHDataset,
    iterate_batches,
    kth_clip_starts,
    load_clips,
)

KTH3 = ("boxing", "jogging", "walking")


@pytest.fixture(scope="module")
def kth_root(tmp_path_factory):
    """Persons 1, 2 (train) and 17 (test); boxing, jogging, walking; 40 frames of 160x120."""
    return write_kth_fixture(tmp_path_factory.mktemp("kth"), persons=(1, 2, 17), actions=KTH3)


@pytest.fixture(scope="module")
def bair_roots(tmp_path_factory):
    """The same two test sequences as a PNG tree and as one TFRecord file; 3 train sequences."""
    base = tmp_path_factory.mktemp("bair")
    png_root = write_bair_png_fixture(base / "png", trajectories=2, split="test")
    write_bair_png_fixture(base / "png", trajectories=3, split="train")
    tf_root = base / "tf"
    write_bair_tfrecord_fixture(tf_root / "softmotion30_44k" / "test" / "traj_0_to_1.tfrecords", 2)
    return png_root, tf_root


def frame_number(path):
    return int(path.stem.split("_")[1])


# ----------------------------------------------------------------------------- TFRecord codec

def test_crc32c_known_vectors_and_vectorised_path():
    assert tfrecord.crc32c(b"123456789") == 0xE3069283
    assert tfrecord.crc32c(bytes(32)) == 0x8A9136AA          # RFC 3720 B.4
    assert tfrecord.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert tfrecord.crc32c(bytes(range(32))) == 0x46DD794E
    assert tfrecord.masked_crc32c(b"") == 0xA282EAD8          # crc 0, rotated, + delta
    rng = np.random.default_rng(0)
    for n in (4096, 5000, 100_003):                            # chunked NumPy path vs byte loop
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert tfrecord.crc32c(data) == tfrecord._crc_register_update(0xFFFFFFFF, data) ^ 0xFFFFFFFF


def test_encode_example_wire_bytes_and_round_trip():
    # Example{features{feature{key:"a" value{int64_list{value:[1]}}}}} per the protobuf spec
    assert tfrecord.encode_example({"a": [1]}).hex() == "0a0c0a0a0a016112051a030a0101"
    features = {"b": [b"xy", b""], "f": np.array([1.5, -2.0], np.float32), "i": [-1, 2 ** 40, 0]}
    parsed = tfrecord.parse_example(tfrecord.encode_example(features))
    assert parsed["b"] == [b"xy", b""]
    assert parsed["f"].dtype == np.float32 and parsed["f"].tolist() == [1.5, -2.0]
    assert parsed["i"].tolist() == [-1, 2 ** 40, 0]


def test_parse_example_unpacked_lists():
    def ld(field, payload):  # length-delimited field (sizes < 128 here)
        return bytes([field << 3 | 2, len(payload)]) + payload
    floats = b"\x0d" + struct.pack("<f", 1.5) + b"\x0d" + struct.pack("<f", 2.0)  # two fixed32
    ints = b"\x08\x07\x08\x2a"                                                    # two varints
    entries = (ld(1, ld(1, b"f") + ld(2, ld(2, floats)))
               + ld(1, ld(1, b"n") + ld(2, ld(3, ints))))
    parsed = tfrecord.parse_example(ld(1, entries))
    assert parsed["f"].tolist() == [1.5, 2.0] and parsed["n"].tolist() == [7, 42]
    with pytest.raises(ValueError, match="malformed"):
        tfrecord.parse_example(ld(1, entries)[:-3])


def test_tfrecord_framing(tmp_path):
    path = tmp_path / "r.tfrecords"
    tfrecord.write_tfrecords(path, [b"hello", b"", b"x" * 5000])
    raw = path.read_bytes()
    assert struct.unpack("<Q", raw[:8])[0] == 5
    assert struct.unpack("<I", raw[8:12])[0] == tfrecord.masked_crc32c(raw[:8])
    assert struct.unpack("<I", raw[17:21])[0] == tfrecord.masked_crc32c(b"hello")
    assert list(tfrecord.read_tfrecords(path)) == [b"hello", b"", b"x" * 5000]
    assert tfrecord.index_tfrecord(path) == [(12, 5), (33, 0), (49, 5000)]


# ----------------------------------------------------------------------------- KTH

def test_kth_clip_start_rule():
    numbers = list(range(1, 41))
    assert kth_clip_starts(numbers, 30, 30) == [10]
    assert kth_clip_starts(numbers, 30, 3) == [1, 4, 7, 10]
    assert kth_clip_starts(numbers, 20, 20) == [0, 20]
    assert kth_clip_starts(numbers, 41, 41) == []
    gap = [n for n in numbers if n != 35]  # a missing frame: windows across it are skipped
    assert [gap[s] for s in kth_clip_starts(gap, 10, 10)] == [5, 15, 25]


def test_kth_person_split_and_clip_counts(kth_root):
    train = KTHDataset(kth_root, "train", actions=KTH3)
    test = KTHDataset(kth_root, "test", actions=KTH3)
    assert {v.person for v in train.videos} == {1, 2}
    assert {v.person for v in test.videos} == {17}
    # 40 frames, seq_len 30: boxing/walking 1 clip (step 30), jogging 4 clips (step 3)
    assert len(train) == 2 * (1 + 4 + 1) and len(test) == 1 + 4 + 1
    jogging = [s for v, s in train.clips if train.videos[v].action == "jogging"]
    assert jogging == [1, 4, 7, 10, 1, 4, 7, 10]
    assert [frame_number(p) for p in train.clip_frame_paths(0)] == list(range(11, 41))
    assert len(KTHDataset(kth_root, "train", actions=("boxing",), step=1)) == 2 * 11
    assert len(KTHDataset(kth_root, "test", actions=("walking",), seq_len=20)) == 2


def test_kth_tensor_shape_range_and_grayscale(kth_root):
    for size in (128, 64):
        clip = KTHDataset(kth_root, "test", actions=("boxing",), size=size)[0]
        assert clip.shape == (30, 1, size, size) and clip.dtype == torch.float32
        assert clip.min().item() == pytest.approx(KTH_FIXTURE_BACKGROUND / 255, abs=1e-6)
        assert clip.max().item() == pytest.approx(KTH_FIXTURE_FOREGROUND / 255, abs=1e-6)


def test_kth_frame_order_follows_the_moving_square(kth_root):
    data = KTHDataset(kth_root, "train", actions=("jogging",))
    index = 2  # person 01, positions 7..36 -> frame numbers 8..37
    clip = data[index][:, 0]                                   # (30, 128, 128)
    weights = (clip - KTH_FIXTURE_BACKGROUND / 255).clamp(min=0).sum(dim=1)  # (30, 128) per column
    centroid = (weights * torch.arange(128.0)).sum(1) / weights.sum(1)
    numbers = torch.tensor([frame_number(p) for p in data.clip_frame_paths(index)], dtype=torch.float)
    assert numbers[0] == 8 and numbers[-1] == 37
    # square of 16 px with left edge 4 + 3 (n - 1) at 160 wide, resampled to 128 (scale 0.8)
    expected = (4 + 3 * (numbers - 1) + 8) * 0.8 - 0.5
    assert torch.allclose(centroid, expected, atol=0.2)
    assert (centroid.diff() > 2.2).all()


def test_kth_gap_max_clips_jpg_and_kth_action_folder(tmp_path):
    root = write_kth_fixture(tmp_path / "kth_action", persons=(3,), actions=("boxing",), ext="jpg")
    (root / "boxing" / "person03_boxing_d1_uncomp" / "image_0035.jpg").unlink()
    data = KTHDataset(tmp_path, "train", seq_len=10, actions=("boxing",))  # finds kth_action/
    assert [frame_number(data.clip_frame_paths(i)[0]) for i in range(len(data))] == [5, 15, 25]
    clip = data[0]
    assert clip.shape == (10, 1, 128, 128)
    assert abs(clip.max().item() - KTH_FIXTURE_FOREGROUND / 255) < 0.05  # JPEG is lossy
    every = KTHDataset(root, "train", seq_len=30, step=1, actions=("boxing",))
    assert [s for _, s in every.clips] == [0, 1, 2, 3, 4]  # numbers 1..34 then 36..40
    subset = KTHDataset(root, "train", seq_len=10, step=1, actions=("boxing",), max_clips=3)
    assert [s for _, s in subset.clips] == [0, 12, 24]  # evenly spread over 25 clips


def test_kth_missing_data_messages(tmp_path, monkeypatch, kth_root):
    monkeypatch.delenv("VPSTUDY_KTH_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="VPSTUDY_KTH_DIR") as error:
        KTHDataset(None, "train")
    assert "<root>/<action>/personXX_<action>_dN_uncomp/image_NNNN.png" in str(error.value)
    with pytest.raises(FileNotFoundError, match="(?s)does not exist.*personXX_<action>_dN_uncomp"):
        KTHDataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"(?s)missing action folder.*handclapping.*actions="):
        KTHDataset(kth_root, "train")  # the fixture has only three of the six actions
    only_train = write_kth_fixture(tmp_path / "k", persons=(1,), actions=("boxing",), frames=30)
    with pytest.raises(FileNotFoundError, match="no test video folders .*17-25"):
        KTHDataset(only_train, "test", actions=("boxing",))
    monkeypatch.setenv("VPSTUDY_KTH_DIR", str(only_train))
    assert len(KTHDataset(None, "train", actions=("boxing",))) == 1


def test_kth_invalid_arguments_and_corrupt_frame(tmp_path, kth_root):
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        KTHDataset(kth_root, "val", actions=KTH3)
    with pytest.raises(ValueError, match="actions must be"):
        KTHDataset(kth_root, "train", actions=("dancing",))
    with pytest.raises(ValueError, match="step"):
        KTHDataset(kth_root, "train", actions=KTH3, step=0)
    with pytest.raises(ValueError, match="41 consecutively numbered frames"):
        KTHDataset(kth_root, "train", actions=KTH3, seq_len=41)
    root = write_kth_fixture(tmp_path, persons=(1,), actions=("boxing",), frames=30)
    bad = root / "boxing" / "person01_boxing_d1_uncomp" / "image_0007.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="image_0007.png"):
        KTHDataset(root, "train", actions=("boxing",))[0]


# ----------------------------------------------------------------------------- BAIR

def test_bair_png_values_shape_and_order(bair_roots):
    png_root, _ = bair_roots
    test, train = BAIRDataset(png_root, "test"), BAIRDataset(png_root / "processed_data", "train")
    assert len(test) == 2 and len(train) == 3
    clip = test[1]
    assert clip.shape == (20, 3, 64, 64) and clip.dtype == torch.float32
    expected = torch.from_numpy(bair_fixture_frames(1)[:20]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(clip, expected)
    red = torch.tensor(BAIR_FIXTURE_SQUARE_RGB, dtype=torch.float)[:, None, None] / 255
    square = (clip == red).all(dim=1)                            # (20, 64, 64)
    left_edges = [int(torch.nonzero(frame)[:, 1].min()) for frame in square]
    assert left_edges == [4 + i for i in range(20)]
    assert BAIRDataset(png_root, "test", seq_len=30)[0].shape == (30, 3, 64, 64)
    with pytest.raises(ValueError, match="at most 30"):
        BAIRDataset(png_root, "test", seq_len=31)


def test_bair_png_and_tfrecord_give_identical_tensors(bair_roots):
    png_root, tf_root = bair_roots
    png = BAIRDataset(png_root, "test")
    for tf in (BAIRTFRecordDataset(tf_root, "test"),
               BAIRTFRecordDataset(tf_root / "softmotion30_44k" / "test", "test"),
               BAIRTFRecordDataset(tf_root / "softmotion30_44k" / "test" / "traj_0_to_1.tfrecords")):
        assert len(tf) == 2
        for i in range(2):
            assert torch.equal(png[i], tf[i])
    with pytest.raises(ValueError, match="'test' split folder but split='train'"):
        BAIRTFRecordDataset(tf_root / "softmotion30_44k" / "test", "train")


def test_bair_tfrecord_corruption_is_detected(bair_roots, tmp_path):
    _, tf_root = bair_roots
    good = (tf_root / "softmotion30_44k" / "test" / "traj_0_to_1.tfrecords").read_bytes()
    path = tmp_path / "traj_0_to_1.tfrecords"

    flipped = bytearray(good)
    flipped[12 + 1000] ^= 0x01                                   # inside record 0's data
    path.write_bytes(bytes(flipped))
    data = BAIRTFRecordDataset(path, "test")                     # headers are still fine
    with pytest.raises(DataError, match=r"traj_0_to_1\.tfrecords.*data CRC mismatch"):
        data[0]
    assert torch.equal(data[1], BAIRTFRecordDataset(tf_root, "test")[1])
    unchecked = BAIRTFRecordDataset(path, "test", verify_crc=False)[0]
    assert not torch.equal(unchecked, BAIRTFRecordDataset(tf_root, "test")[0])

    bad_length = bytearray(good)
    bad_length[0] ^= 0x01
    path.write_bytes(bytes(bad_length))
    with pytest.raises(ValueError, match=r"traj_0_to_1\.tfrecords.*length CRC mismatch"):
        BAIRTFRecordDataset(path, "test")

    path.write_bytes(good[:-10])
    with pytest.raises(ValueError, match=r"traj_0_to_1\.tfrecords: record 1 .*truncated"):
        BAIRTFRecordDataset(path, "test")

    tfrecord.write_tfrecords(path, [tfrecord.encode_example({"0/image_main/encoded": b"x"})])
    with pytest.raises(ValueError, match="0/image_aux1/encoded"):
        BAIRTFRecordDataset(path, "test")[0]


def test_bair_missing_data_messages(bair_roots, tmp_path, monkeypatch):
    png_root, tf_root = bair_roots
    monkeypatch.delenv("VPSTUDY_BAIR_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="VPSTUDY_BAIR_DIR") as error:
        BAIRDataset(None, "test")
    assert "<root>/processed_data/{train,test}/<traj_folder>/<k>/<0..29>.png" in str(error.value)
    with pytest.raises(FileNotFoundError, match="VPSTUDY_BAIR_DIR") as error:
        BAIRTFRecordDataset(None, "test")
    assert "<root>/softmotion30_44k/{train,test}/traj_*_to_*.tfrecords" in str(error.value)
    test_only = write_bair_png_fixture(tmp_path / "p", trajectories=1, split="test")
    with pytest.raises(FileNotFoundError, match="no 'train' folder"):
        BAIRDataset(test_only, "train")
    with pytest.raises(FileNotFoundError, match="no \\*.tfrecords files for split 'train'"):
        BAIRTFRecordDataset(tf_root, "train")
    (tmp_path / "empty" / "processed_data" / "test").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no <traj_folder>/<k>/ sequence folders"):
        BAIRDataset(tmp_path / "empty", "test")
    monkeypatch.setenv("VPSTUDY_BAIR_DIR", str(png_root))
    assert len(BAIRDataset(None, "test")) == 2


def test_bair_corrupt_png_names_the_file(tmp_path):
    root = write_bair_png_fixture(tmp_path, trajectories=2, split="test")
    folder = root / "processed_data" / "test" / "traj_0_to_1"
    (folder / "1" / "3.png").write_bytes((folder / "1" / "3.png").read_bytes()[:40])  # truncated
    (folder / "2" / "5.png").unlink()
    data = BAIRDataset(root, "test")
    with pytest.raises(DataError, match=r"traj_0_to_1/1/3\.png"):
        data[0]
    with pytest.raises(FileNotFoundError, match=r"missing frame .*traj_0_to_1/2/5\.png"):
        data[1]
    assert BAIRDataset(root, "test", seq_len=5)[1].shape == (5, 3, 64, 64)


# ----------------------------------------------------------------------------- helpers

def test_load_clips_is_a_deterministic_subset(kth_root):
    data = KTHDataset(kth_root, "train", actions=("boxing",), seq_len=10, size=64, step=10)
    assert len(data) == 8
    clips = load_clips(data, 3, seed=0)
    assert clips.shape == (3, 10, 1, 64, 64)
    chosen = torch.randperm(8, generator=torch.Generator().manual_seed(0))[:3].sort().values
    assert torch.equal(clips, torch.stack([data[int(i)] for i in chosen]))
    assert torch.equal(clips, load_clips(data, 3, seed=0))
    assert load_clips(data, None).shape[0] == 8
    with pytest.raises(ValueError, match="exceeds"):
        load_clips(data, 9)


def test_iterate_batches(bair_roots):
    png_root, _ = bair_roots
    data = BAIRDataset(png_root, "train", seq_len=4)             # 3 sequences
    batches = list(iterate_batches(data, 2, generator=torch.Generator().manual_seed(1)))
    assert len(batches) == 1 and batches[0].shape == (2, 4, 3, 64, 64)
    again = list(iterate_batches(data, 2, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(batches[0], again[0])
    ordered = list(iterate_batches(data, 2, shuffle=False, drop_last=False))
    assert [b.shape[0] for b in ordered] == [2, 1]
    assert torch.equal(ordered[1][0], data[2])
    order = torch.randperm(3, generator=torch.Generator().manual_seed(1))[:2]
    assert torch.equal(batches[0], torch.stack([data[int(i)] for i in order]))
