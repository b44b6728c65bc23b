"""Face encoder: training, the FER port, crop-file evaluation, the through-the-app check, detector benchmark."""
