"""FER+ votes: majority labels by the usual protocol, the join to FER2013 by content, the soft training target."""
from __future__ import annotations

import numpy as np
import pytest

from umq.labels import EMOTIONS
from umq.training.data import default_data_root
from umq.training.data.ferplus import load_ferplus, majority_labels, match_images

NAMES = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
DATA = default_data_root()


def test_majority_leaves_out_ties_and_non_ekman_winners():
    votes = np.array([[0, 7, 1, 0, 0, 0, 0, 2, 0, 0],   # happiness
                      [4, 4, 0, 0, 0, 0, 0, 2, 0, 0],   # tie
                      [1, 0, 0, 0, 0, 0, 0, 6, 3, 0],   # contempt: no Ekman-7 slot
                      [0, 0, 0, 0, 0, 0, 0, 0, 2, 8],   # not a face
                      [0, 0, 0, 0, 0, 0, 6, 0, 0, 4]])  # fear
    assert majority_labels(votes, NAMES).tolist() == [EMOTIONS.index("happy"), -1, -1, -1, EMOTIONS.index("fearful")]


def test_images_are_joined_by_content_despite_jpeg_noise_and_another_order():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (50, 48, 48)).astype(np.uint8)
    order = rng.permutation(50)[:20]
    noisy = np.clip(ref[order].astype(int) + rng.integers(-2, 3, (20, 48, 48)), 0, 255).astype(np.uint8)
    stranger = rng.integers(0, 256, (1, 48, 48)).astype(np.uint8)
    found = match_images(np.concatenate([noisy, stranger]), ref)
    assert found[:20].tolist() == order.tolist() and found[20] == -1


@pytest.mark.skipif(DATA is None or not (DATA / "ferplus" / "train.npz").is_file(),
                    reason="../shared/data/ferplus not found (set UMQ_DATA)")
def test_soft_targets_mix_votes_and_fer2013_labels_on_the_real_files():
    from umq.training.face.train import ferplus_targets, load_npz

    x, y = load_npz(DATA / "fer2013" / "train.npz")
    imgs, target, hard = ferplus_targets(DATA / "ferplus", x, y, 0.7)
    assert np.allclose(target.sum(1), 1.0) and (target >= 0).all()
    assert len(imgs) == len(target) == len(hard) > 28_000
    fp = load_ferplus(DATA / "ferplus" / "train.npz")
    # where the ten votes agree on one Ekman class and FER2013 says the same, the target is that class alone
    agree = np.flatnonzero(fp.votes.max(1) == 10)[:200]
    assert (hard[agree] == fp.votes[agree].argmax(1)).mean() > 0.9
