"""The Gradio dashboard: :class:`~.controller.DashboardController` (framework-neutral core, tested without a
browser) and :func:`~.ui.launch` (the thin Gradio 6 layer)."""
from .controller import DashboardController, DashboardState, NotInControl, ReplayPathError

__all__ = ["DashboardController", "DashboardState", "NotInControl", "ReplayPathError"]
