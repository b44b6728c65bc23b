"""Lab Streaming Layer outlets: each window's result as LSL streams, for synchronised recording with EEG, eye
tracking and the other streams of a lab (LabRecorder records them all into one XDF file).

Three streams, named ``<name>-emotion``, ``<name>-quality`` and ``<name>-markers`` (default name ``umq-live``):

* type ``Emotion``: one float32 channel per class (``p_<emotion>`` in :data:`umq.labels.EMOTIONS` order), then
  ``confidence`` and ``no_evidence`` (0/1); nominal rate ``1 / hop``.
* type ``Quality``: ``<m>_quality`` in [0, 1] and ``<m>_state`` (codes :data:`app.table.STATE_CODES`: 0 ok, 1 low,
  2 missing, 3 idle) for video, audio, text; nominal rate ``1 / hop``.
* type ``Markers``: one string channel, irregular rate: ``video: ok -> low (too dark)`` when a modality's state
  changes, ``lab: blur=0.5`` / ``lab: off`` when the quality-lab corruptions change, ``evidence: none`` /
  ``evidence: back`` when the no-evidence verdict flips.

Channel labels, units and the state codes are in each stream's ``desc``. A sample's timestamp is the window's end
(``t1``) on LSL's clock: the session clock is mapped onto :func:`pylsl.local_clock` by the offset measured when the
first result of a run arrives (re-measured when a new run starts). Live, that is the capture time of the window's
last sample; in a replay faster than real time the stamps run ahead of the wall clock at the replay's pace.
"""
from __future__ import annotations

import logging
import threading

from umq.labels import EMOTIONS
from umq.result import MODALITIES, Result

from .table import STATE_CODES

log = logging.getLogger(__name__)

INSTALL_HINT = "pylsl is not installed: pip install pylsl (it bundles liblsl)"


class LslUnavailable(RuntimeError):
    """pylsl (or its liblsl) is missing: said before any work starts."""


def _pylsl():
    try:
        import pylsl
    except (ImportError, RuntimeError) as exc:  # RuntimeError: pylsl present but liblsl not found
        raise LslUnavailable(f"{INSTALL_HINT} ({exc})") from None
    return pylsl


def emotion_channels() -> list[str]:
    return [*(f"p_{e}" for e in EMOTIONS), "confidence", "no_evidence"]


def quality_channels() -> list[str]:
    return [*(f"{m}_quality" for m in MODALITIES), *(f"{m}_state" for m in MODALITIES)]


def _info(pylsl, name: str, kind: str, labels: list[str], rate: float, fmt, source_id: str, units: dict):
    info = pylsl.StreamInfo(name, kind, len(labels), rate, fmt, source_id)
    desc = info.desc()
    desc.append_child_value("manufacturer", "UMQ Live")
    chans = desc.append_child("channels")
    for label in labels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", units.get(label, ""))
        ch.append_child_value("type", kind)
    if kind == "Quality":
        codes = desc.append_child("state_codes")
        for state, code in STATE_CODES.items():
            codes.append_child_value(state, str(code))
    return info


class LslPublisher:
    """Publishes results as LSL streams; :meth:`attach` subscribes it to an engine.

    Args:
        name: stream name prefix (each stream's name ends in ``-emotion``, ``-quality``, ``-markers``).
        hop_s: the window hop; the nominal rate of the emotion and quality streams is ``1 / hop_s``.
        source_id: LSL source id prefix (lets a recorder re-find the stream after a restart).
    """

    def __init__(self, name: str = "umq-live", hop_s: float = 0.5, source_id: str | None = None) -> None:
        pylsl = self._lsl = _pylsl()
        sid = source_id or f"umq-live-{name}"
        rate = 1.0 / hop_s
        prob_units = {c: "probability" for c in emotion_channels()}
        self.emotion = pylsl.StreamOutlet(_info(pylsl, f"{name}-emotion", "Emotion", emotion_channels(), rate,
                                                pylsl.cf_float32, f"{sid}-emotion", prob_units))
        q_units = {c: ("0-1" if c.endswith("_quality") else "code") for c in quality_channels()}
        self.quality = pylsl.StreamOutlet(_info(pylsl, f"{name}-quality", "Quality", quality_channels(), rate,
                                                pylsl.cf_float32, f"{sid}-quality", q_units))
        self.markers = pylsl.StreamOutlet(_info(pylsl, f"{name}-markers", "Markers", ["marker"],
                                                pylsl.IRREGULAR_RATE, pylsl.cf_string, f"{sid}-markers", {}))
        self.name = name
        self._offset: float | None = None
        self._last_t1 = float("-inf")
        self._states: dict[str, str] = {}
        self._lab: dict[str, str] = {}
        self._no_evidence = False
        self._now = None
        self._lock = threading.Lock()
        self.pushed = 0

    def attach(self, engine) -> LslPublisher:
        """Publish every result ``engine`` produces (its clock anchors the mapping onto LSL's clock)."""
        self._now = engine.now
        engine.subscribe(self.push)
        return self

    def lsl_time(self, session_t: float) -> float:
        """A session time on LSL's clock (the offset measured at the run's first result)."""
        return session_t + (self._offset or 0.0)

    def push(self, r: Result) -> None:
        """Publish one result (never blocks: LSL outlets buffer and drop for slow consumers)."""
        with self._lock:
            if self._offset is None or r.t1 < self._last_t1:  # a new run: the session clock started again
                now = self._now() if self._now is not None else r.t1
                self._offset = self._lsl.local_clock() - now
                self._states, self._lab, self._no_evidence = {}, {}, False
            self._last_t1 = r.t1
            ts = self.lsl_time(r.t1)
            self.emotion.push_sample([float(r.probs.get(e, 0.0)) for e in EMOTIONS]
                                     + [float(r.confidence), float(r.no_evidence)], ts)
            q = [float(r.modalities[m].quality) if m in r.modalities else 0.0 for m in MODALITIES]
            s = [float(STATE_CODES[r.modalities[m].state]) if m in r.modalities else 2.0 for m in MODALITIES]
            self.quality.push_sample(q + s, ts)
            for text in self._changes(r):
                self.markers.push_sample([text], ts)
            self.pushed += 1

    def _changes(self, r: Result) -> list[str]:
        out = []
        for m, rep in r.modalities.items():
            old = self._states.get(m)
            if old != rep.state:
                why = f" ({rep.reason})" if rep.reason else ""
                out.append(f"{m}: {old or 'start'} -> {rep.state}{why}")
                self._states[m] = rep.state
        if r.lab != self._lab:
            out.append("lab: " + ("; ".join(f"{k}={v}" for k, v in sorted(r.lab.items())) or "off"))
            self._lab = dict(r.lab)
        if r.no_evidence != self._no_evidence:
            out.append("evidence: none" if r.no_evidence else "evidence: back")
            self._no_evidence = r.no_evidence
        return out


def attach_lsl(engine, name: str | None, hop_s: float) -> LslPublisher | None:
    """``--lsl [NAME]`` of the commands: a publisher on ``engine`` (``None`` when ``name`` is ``None``)."""
    if name is None:
        return None
    pub = LslPublisher(name or "umq-live", hop_s).attach(engine)
    log.info("LSL: publishing %s-emotion, %s-quality, %s-markers", pub.name, pub.name, pub.name)
    return pub
