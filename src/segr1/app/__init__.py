"""The Seg-R1 web demo and HTTP API (Gradio).

``segr1.app.handler`` holds the request handling (no Gradio import); ``segr1.app.demo`` builds the
``gr.Blocks`` app (imports Gradio, the ``demo`` extra). Names are imported lazily so that importing this
package stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "DemoInputError": "segr1.app.handler",
    "DemoLimits": "segr1.app.handler",
    "DemoResponse": "segr1.app.handler",
    "handle_request": "segr1.app.handler",
    "build_app": "segr1.app.demo",
    "launch": "segr1.app.demo",
    "load_pipelines": "segr1.app.demo",
    "make_pipelines": "segr1.app.demo",
    "default_examples": "segr1.app.demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'segr1.app' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
