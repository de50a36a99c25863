"""``python -m vpstudy predict``: the model from shipped weights, a run or a checkpoint; input from a
real video clip, a folder of frames, an .npy array or the fixed test set; its conversions and errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vpstudy
from vpstudy.__main__ import main
from vpstudy.config import make_config
from vpstudy.data import fixed_test_set
from vpstudy.metrics import mse_per_frame, ssim_per_frame
from vpstudy.predict import (
    LUMA,
    PredictInputError,
    ffmpeg_available,
    load_predictor,
    predict,
    read_frames,
    run_predict,
    to_model_layout,
)
from vpstudy.train import load_run_model

pytestmark = pytest.mark.usefixtures("one_thread")


def gif_frames(path: Path) -> list[np.ndarray]:
    with Image.open(path) as im:
        out = []
        for k in range(im.n_frames):
            im.seek(k)
            out.append(np.asarray(im.convert("RGB")).astype(int))
    return out


def moving_square(frames: int = 20, size: int = 48, rgb: bool = False) -> np.ndarray:
    """uint8 (T, size, size[, 3]): a white square moving right 1 px per frame on black."""
    video = np.zeros((frames, size, size) + ((3,) if rgb else ()), np.uint8)
    for i in range(frames):
        video[i, 10:22, 4 + i: 16 + i] = 255
    return video


def test_predict_on_a_real_clip_with_the_shipped_gsta_weights(real_clip, tmp_path, capsys):
    out = tmp_path / "bikes.gif"
    assert main(["predict", "--model", "gsta", "--video", str(real_clip("bikes.mp4")), "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "20 frames of 640x272, RGB; RGB to grey (ITU-R 601 luma); centre crop to 272x272; resized to 32x32" in text
    assert "observed frames 1-10, target frames 11-20" in text and "MSE " in text and "SSIM " in text
    frames = gif_frames(out)
    assert len(frames) == 10
    h, w = frames[0].shape[:2]
    third = w // 3
    predicted = [f[:, third: 2 * third] for f in frames]
    assert np.abs(predicted[0] - predicted[-1]).mean() > 1          # the prediction moves
    assert np.abs(frames[0][:, :third] - frames[5][:, :third]).mean() > 1     # so does the clip
    assert out.with_suffix(".mp4").is_file() == ffmpeg_available()


def test_a_short_clip_has_no_target_and_a_too_short_one_is_an_error(real_clip, tmp_path, trained_runs):
    root, rec, _ = trained_runs
    clip = real_clip("carphone_pristine.mp4")
    res = run_predict(run=rec["_dir"], video=clip, out=tmp_path / "p.gif", step=5, start=60, mp4=False,
                      log=lambda s: None)        # frames 60, 65, ..., 115: 12 frames, fewer than 20
    assert res.clip.target is None and res.metrics is None and res.prediction.shape == (10, 1, 32, 32)
    assert "no target (12 frames, a target needs 20)" in res.clip.notes[-1]
    with pytest.raises(PredictInputError, match=r"carphone_pristine.mp4: has 4 frames; the model needs at least 10"):
        run_predict(run=rec["_dir"], video=clip, out=tmp_path / "q.gif", start=100, step=5, log=lambda s: None)


def test_conversion_to_the_model_layout():
    cfg = make_config("smoke")                                  # grey 32x32, 10 + 10 frames
    rgb = np.zeros((25, 40, 60, 3), np.uint8)
    rgb[..., 0] = 255                                           # pure red
    rgb[:, :, :10] = 0                                          # black bands outside the centre square
    rgb[:, :, 50:] = 0
    clip = to_model_layout(rgb, cfg, "red.mp4")
    assert clip.observed.shape == (10, 1, 32, 32) and clip.target.shape == (10, 1, 32, 32)
    np.testing.assert_allclose(clip.observed, LUMA[0], atol=1e-6)   # crop kept only the red square
    assert clip.notes == ["red.mp4: 25 frames of 60x40, RGB", "RGB to grey (ITU-R 601 luma)",
                          "centre crop to 40x40", "resized to 32x32", "observed frames 1-10, target frames 11-20"]
    bair = make_config("smoke", dataset="bair", model="sepcrev-bair", downsample=1)    # RGB 64x64
    grey = moving_square(20, 64).astype(np.float32)[..., None] / 255
    clip = to_model_layout(grey, bair)
    assert clip.observed.shape == (10, 3, 64, 64) and "grey to RGB" in clip.notes
    assert np.array_equal(clip.observed[:, 0], clip.observed[:, 2])
    assert np.array_equal(clip.target[:, 1], grey[10:, :, :, 0])        # no crop, no resize: unchanged


@pytest.mark.parametrize("layout", ["THW", "THWC", "TCHW", "1THWC", "float"])
def test_npy_layouts(tmp_path, layout):
    video = moving_square(20, 32)
    a = {"THW": video, "THWC": video[..., None], "TCHW": video[:, None], "1THWC": video[None, ..., None],
         "float": video.astype(np.float64) / 255}[layout]
    np.save(tmp_path / "v.npy", a)
    frames = read_frames(tmp_path / "v.npy")
    assert frames.shape == (20, 32, 32, 1)
    clip = to_model_layout(frames, make_config("smoke"))
    np.testing.assert_allclose(clip.target[:, 0], video[10:] / 255, atol=1e-6)


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 3, 4, 5, 6, 7)), r"shape \(2, 3, 4, 5, 6, 7\); expected frames as \(T, H, W\)"),
    (np.full((20, 8, 8), 2.0), "values from 2 to 2; expected"),
    (np.zeros((20, 8, 8), complex), "complex128 values"),
])
def test_bad_npy_is_a_one_line_error_naming_the_file(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(PredictInputError, match=f"bad.npy: .*{message}"):
        read_frames(tmp_path / "bad.npy")


def test_a_folder_of_frames_in_name_order(tmp_path, trained_runs):
    root, rec, _ = trained_runs
    video = moving_square(20, 32, rgb=True)
    for i, f in enumerate(video):                   # frame_2 must come before frame_10
        Image.fromarray(f).save(tmp_path / f"frame_{i + 1}.png")
    res = run_predict(run=rec["_dir"], frames=tmp_path, out=tmp_path / "out" / "p.gif", mp4=False,
                      log=lambda s: None)
    np.testing.assert_allclose(res.clip.observed[:, 0], video[:10, ..., 0] / 255 * LUMA.sum(), atol=1e-5)
    p, y = res.prediction[None], res.clip.target[None]
    assert res.metrics["mse"] == pytest.approx(mse_per_frame(p, y)[0].tolist())
    assert res.metrics["ssim"] == pytest.approx(ssim_per_frame(p, y, data_range=2.0)[0].tolist())
    assert len(gif_frames(tmp_path / "out" / "p.gif")) == 10


def test_bad_folders_name_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictInputError, match="empty: a folder without frames"):
        read_frames(tmp_path / "empty")
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(odd / "1.png")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(odd / "2.png")
    with pytest.raises(PredictInputError, match=r"2.png: frame of shape \(9, 8\), the first is \(8, 8\)"):
        read_frames(odd)
    (odd / "3.png").write_text("not an image")
    with pytest.raises(PredictInputError, match="3.png: not a readable image"):
        read_frames(odd)


def test_unreadable_video_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    assert main(["predict", "--model", "gsta", "--video", str(bad), "--out", str(tmp_path / "p.gif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: cannot be read as a video")
    assert main(["predict", "--model", "gsta", "--video", str(tmp_path / "nope.mp4")]) == 2
    assert "nope.mp4: no such file or folder" in capsys.readouterr().err
    assert main(["predict", "--model", "gsta", "--frames", str(bad)]) == 2
    assert "--frames needs a folder" in capsys.readouterr().err


def test_test_index_digits_run_and_checkpoint(tmp_path, trained_runs):
    root, rec, _ = trained_runs
    model, cfg = load_run_model(rec["_dir"])
    res = run_predict(run=rec["_dir"], test_index=3, out=tmp_path / "t.gif", mp4=False, log=lambda s: None)
    seq = fixed_test_set(cfg)[3].numpy()
    assert np.array_equal(res.clip.observed, seq[:10]) and np.array_equal(res.clip.target, seq[10:20])
    assert np.array_equal(res.prediction, predict(model, cfg, seq[:10]))
    batch = predict(model, cfg, torch.from_numpy(seq[None, :10]))
    assert batch.shape == (1, 10, 1, 32, 32) and np.array_equal(batch[0], res.prediction)
    alone = run_predict(checkpoint=Path(rec["_dir"]) / "checkpoint.pt", test_index=3, out=tmp_path / "c.gif",
                        mp4=False, log=lambda s: None)
    assert np.array_equal(alone.prediction, res.prediction)
    three = run_predict(run=rec["_dir"], test_index=3, digits=3, out=tmp_path / "3.gif", mp4=False,
                        log=lambda s: None)
    assert np.array_equal(three.clip.observed, fixed_test_set(cfg, 3)[3, :10].numpy())
    assert not np.array_equal(three.clip.observed, res.clip.observed)
    with pytest.raises(PredictInputError, match="--test-index 6: the fixed test set has 6 sequences; give 0 to 5"):
        run_predict(run=rec["_dir"], test_index=6, out=tmp_path / "x.gif", log=lambda s: None)
    with pytest.raises(ValueError, match=r"the model observes \(10, 1, 32, 32\)"):
        predict(model, cfg, seq[:9])


def test_the_library_api_and_model_choice_errors(tmp_path):
    model, cfg = vpstudy.load_trained("gsta")
    assert cfg.model == "gsta" and not model.training
    net, cfg2, what = load_predictor(model="gsta")
    assert what.startswith("shipped gsta weights (run gsta-cpu-")
    with pytest.raises(ValueError, match="exactly one of --model NAME, --run DIR or --checkpoint PATH"):
        load_predictor(model="gsta", run="x")
    with pytest.raises(FileNotFoundError, match="is not a run directory"):
        load_predictor(run=tmp_path)
    with pytest.raises(ValueError, match="give exactly one input"):
        run_predict(model="gsta", log=lambda s: None)
