"""The text front-end (text modality): normalisation, MiniLM sentence features, the (context-aware) emotion head,
the transcript context, text quality cues and text corruptions. Live entry point: :class:`.frontend.TextFrontEnd`
with :class:`.context.TranscriptContext`."""
