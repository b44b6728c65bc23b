"""Runtime model: label-consistent triples caches, sampling, training, calibration, evaluation and reports."""
