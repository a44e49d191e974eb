"""The HTTP side: iPXE boot scripts, boot assets, guarded config delivery, REST API, metrics.

One module per endpoint (matchbox's layout): `boot.py` (/boot.ipxe, /ipxe), `assets.py`
(/assets/...), `config.py` (/config), `api/` (/api/v1/...), `metrics.py` (/metrics),
`health.py` (/healthz). `app.py` builds the application; `service.py` runs it in the daemon.
"""

from __future__ import annotations

__all__: list[str] = []
