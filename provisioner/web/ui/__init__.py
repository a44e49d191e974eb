"""The operator console: server-rendered pages under /ui/ with live updates over SSE.

`create_ui_app(deps)` builds an aiohttp sub-application from explicit dependencies
(`UiDeps`), so whichever application serves the operator API mounts it with
`mount_ui(app, deps)`. See docs/ui.md.
"""

from __future__ import annotations

from provisioner.web.ui.app import UI_PREFIX, UiDeps, create_ui_app, mount_ui

__all__ = ["UI_PREFIX", "UiDeps", "create_ui_app", "mount_ui"]
