"""UMQ model package: config, the model (all three stages), its losses and baseline/ablation presets."""
from umq.model.baselines import VARIANTS, variant_config
from umq.model.config import LossConfig, ModalitySpec, UMQConfig
from umq.model.losses import compute_losses
from umq.model.umq import UMQ

__all__ = ["UMQ", "UMQConfig", "ModalitySpec", "LossConfig", "compute_losses", "VARIANTS", "variant_config"]
