"""Voice encoder: training (CRNN, multi-corpus Whisper head), augmentation, feature caches, evaluation."""
