"""What the dashboard may open when a person types or picks it: replay paths only under the allowed folders,
cameras and microphones only from the probed list (files and URLs as a camera only from the operator's command
line). Error texts never say whether a path outside the allowed folders exists."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .uploads import VIDEO_SUFFIXES


class ReplayPathError(ValueError):
    """A replay path the dashboard refuses: outside the allowed folders, missing, or not a session/video."""


class DeviceChoiceError(ValueError):
    """A camera or microphone the dashboard refuses: only probed devices (or the operator's --camera) are used."""


def check_replay_path(path: str | os.PathLike, roots: Sequence[Path], hidden: Sequence[Path] = ()) -> Path:
    """Resolve ``path`` (symlinks and ``..`` included) and refuse anything outside ``roots``; ``hidden`` roots
    are allowed but not named in the message (the private upload folder)."""
    from streams.session import is_session_dir

    try:
        rp = Path(path).expanduser().resolve(strict=False)
    except (OSError, RuntimeError):
        rp = None
    if rp is None or not any(rp == r or r in rp.parents for r in roots):
        shown = ", ".join(str(r) for r in roots if r not in hidden)
        raise ReplayPathError(f"{path} is outside the folders the dashboard may read ({shown}); "
                              "start the app with --allow DIR to add one")
    if not rp.exists():
        raise ReplayPathError(f"{path}: no such session folder or video file")
    if not (is_session_dir(rp) or (rp.is_file() and rp.suffix.lower() in VIDEO_SUFFIXES)):
        raise ReplayPathError(f"{path} is neither a session folder (meta.json) nor a video file "
                              f"({', '.join(VIDEO_SUFFIXES)})")
    return rp


def check_devices(camera: str | None, mic: str | None, camera_choices: list[str], mics: list | str,
                  operator_camera: str | None = None) -> tuple[str, str | None]:
    """Map picker values to ``(camera, mic)`` capture options, refusing anything not probed. A typed value is never
    opened (no server file, no URL); ``"command line"`` means the operator's ``--camera``."""
    cam = (camera or "none").strip()
    if cam == "command line" and operator_camera:
        cam = operator_camera
    elif cam not in camera_choices:
        raise DeviceChoiceError("camera: pick 'none' or one of the cameras found on this machine; video files "
                                "and URLs are given by the operator on the command line (--camera PATH)")
    mic_ids = [] if isinstance(mics, str) else [str(m.id) for m in mics]
    m = (mic or "none").strip()
    if m in ("default", "none"):
        return cam, None if m == "default" else "none"
    mid = m.split(":")[0].strip()
    if mid not in mic_ids:
        raise DeviceChoiceError("microphone: pick 'none', 'default' or one of the microphones found")
    return cam, mid
