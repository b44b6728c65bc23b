"""Perception models that turn raw inputs (face crops, ...) into per-modality emotion evidence."""
