"""UMQ model package: config, the model (all three stages), its losses and baseline/ablation presets."""
from .baselines import VARIANTS, variant_config
from .config import LossConfig, ModalitySpec, UMQConfig
from .losses import compute_losses
from .umq import UMQ

__all__ = ["UMQ", "UMQConfig", "ModalitySpec", "LossConfig", "compute_losses", "VARIANTS", "variant_config"]
