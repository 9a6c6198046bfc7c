"""Where a checkpoint's weights live: a `save_pretrained` folder, or a training run folder's `last/`."""

from __future__ import annotations

from pathlib import Path

LAST_LINK = "last"


def resolve_checkpoint(path: str | Path) -> Path:
    """The folder holding config.json: `path` itself, or `path/last` for a training run folder."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path.resolve()
    if (path / LAST_LINK / "config.json").is_file():
        return (path / LAST_LINK).resolve()
    raise FileNotFoundError(
        f"{path}: not a checkpoint folder (no config.json) and not a training run folder with '{LAST_LINK}/'"
    )
