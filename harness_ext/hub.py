"""Whether this process may reach the Hugging Face Hub, decided once before any Hub client is imported.

huggingface_hub and datasets read HF_HUB_OFFLINE when they are imported. A machine that cannot reach the
Hub but has not set it makes every load retry for about half a minute before falling back to the local
cache; `go_offline_if_unreachable` sets it for the rest of the process after one short probe instead.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
DEFAULT_ENDPOINT = "https://huggingface.co"  # huggingface_hub's default, overridden by HF_ENDPOINT
_TRUE = {"1", "true", "yes", "on"}


def offline_set() -> bool:
    """Whether the environment asks for offline mode (any of the Hugging Face offline variables)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in OFFLINE_VARIABLES)


def hub_endpoint() -> str:
    """The Hub address the clients would use."""
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or DEFAULT_ENDPOINT


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub answers an HTTP request within `timeout` seconds (any status counts as an answer)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(hub_endpoint(), method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):  # no route, no name resolution, refused, timed out, malformed endpoint
        return False


def go_offline_if_unreachable() -> str | None:
    """Set HF_HUB_OFFLINE=1 when no offline variable is set and the Hub does not answer; returns why, or None.

    An offline variable set to any value, even a false one, is the user's choice and is left alone.
    Call before huggingface_hub, datasets or transformers are imported.
    """
    if any(name in os.environ for name in OFFLINE_VARIABLES) or hub_reachable():
        return None
    os.environ["HF_HUB_OFFLINE"] = "1"
    return f"the Hugging Face Hub ({hub_endpoint()}) does not answer; running offline (HF_HUB_OFFLINE=1)"
