from __future__ import annotations

import pytest

from umq import labels as L


def test_label_maps():
    assert L.EMOTIONS == ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    assert L.ravdess_label(2) == L.ravdess_label(1) == 0  # calm -> neutral
    assert [L.ravdess_label(c) for c in range(3, 9)] == [1, 2, 3, 4, 5, 6]
    assert [L.EMOTIONS[i] for i in L.FER2013_TO_EKMAN] == ["angry", "disgust", "fearful", "happy", "neutral", "sad",
                                                           "surprised"]
    assert [L.EMOTIONS[i] for i in L.GOEMOTIONS_TO_EKMAN] == ["angry", "disgust", "fearful", "happy", "neutral",
                                                              "sad", "surprised"]
    assert L.index_of("Joy") == 1 and L.index_of("sadness") == 2 and L.canonical("surprise") == "surprised"
    with pytest.raises(KeyError):
        L.canonical("contempt")
    with pytest.raises(KeyError):
        L.ravdess_label(9)
