"""Where the project's own files are: the checkout (``REPO``) and its configs (``CONF``), for every part."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
