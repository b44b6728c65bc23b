"""Everything that trains, ports, builds caches or evaluates; live code (perception, runtime, model) never imports
this package. ``data/`` reads datasets; ``face/``, ``voice/``, ``text/`` train and score the encoders; ``runtime/``
builds the triples caches, trains and calibrates the runtime model; ``train``, ``evaluate`` and ``experiments``
are the protocol (entry points ``python -m umq.train`` / ``umq.evaluate`` / ``umq.experiments``)."""
