"""The face front-end (video modality): RetinaFace detection, landmark alignment, tracking, the expression net,
face quality cues and image corruptions. Live entry point: :class:`.frontend.FaceFrontEnd`."""
