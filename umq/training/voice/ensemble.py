"""Combine trained voice encoders into one ensemble checkpoint (:class:`~umq.perception.voice.ensemble.VoiceEnsemble`).

The members are ordinary voice checkpoints (the log-mel CRNN from ``python -m umq.training.voice.train``, Whisper
heads from ``python -m umq.training.voice.train_multi``); nothing is retrained. The result loads through
:func:`~umq.perception.voice.net.load_voice_net` like any voice encoder::

    python -m umq.training.voice.ensemble --members crnn.pt whisper_s0.pt whisper_s1.pt --out assets/voice/voice_net.pt
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from umq.perception.voice.ensemble import VoiceEnsemble
from umq.perception.voice.net import count_parameters, load_voice_net, save_voice_net

log = logging.getLogger(__name__)


def build_ensemble(members: list[Path], metrics: dict | None = None) -> VoiceEnsemble:
    """The ensemble of the given checkpoints (in that order), on the CPU, with each member's metrics kept."""
    nets = [load_voice_net(p, device="cpu") for p in members]
    ens = VoiceEnsemble(nets)
    ens.metrics = {"members": [{"file": p.name, "arch": n.config.get("arch", "crnn_asp"),
                                "parameters": count_parameters(n), "metrics": n.metrics}
                               for p, n in zip(members, nets)],
                   "parameters": count_parameters(ens), **(metrics or {})}
    return ens.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umq.training.voice.ensemble", description=__doc__.split("\n")[0])
    ap.add_argument("--members", nargs="+", type=Path, required=True, help="voice checkpoints, in member order")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--metrics", default=None, help="a JSON file of measured numbers to store with the weights")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    extra = json.loads(Path(a.metrics).read_text()) if a.metrics else None
    ens = build_ensemble(a.members, extra)
    save_voice_net(ens, a.out)
    log.info("saved a %d-member voice ensemble (%d parameters) to %s", len(a.members), ens.metrics["parameters"],
             a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
