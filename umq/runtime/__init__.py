"""The runtime model: perception front-ends + a UMQ model over face, voice and text, one window at a time.

* :mod:`.features` builds the per-modality input vectors the runtime UMQ model reads (shared by training and
  live use, so both see exactly the same numbers);
* :mod:`.triples` caches those vectors for label-consistent (face, voice, utterance) triples under raw-signal
  corruptions; :mod:`.train` trains and validates the runtime model on them;
* :mod:`.analyzer` turns a :class:`~streams.windows.Window` into a :class:`~umq.result.Result`;
* :mod:`.lab` is the quality lab: corruptions applied to a window before perception.
"""
