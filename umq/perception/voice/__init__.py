"""The voice front-end (audio modality): features (log-mels + descriptors), voice activity, the running speaker
normaliser, the emotion encoder (CRNN or Whisper head), voice quality cues and audio corruptions. Live entry point:
:class:`.frontend.VoiceFrontEnd`."""
