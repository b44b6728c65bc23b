"""Text head: training (single-line and context-aware), evaluation, the through-the-app check."""
