"""The voice front-end (audio modality): features (log-mels + descriptors), voice activity, the running speaker
normaliser, the emotion encoder (CRNN, Whisper head, or the shipped ensemble of both), voice quality cues and
audio corruptions. Live entry point: :class:`.frontend.VoiceFrontEnd`."""
