"""Talos `EventSinkConfig` and `KmsgLogConfig` documents pointing an installed node at us.

After the install the PXE kernel arguments are gone; these documents (Talos
pkg/machinery/config/types/runtime: event_sink.go, kmsg_log.go; in the bundled schema as
runtime.EventSinkV1Alpha1 and runtime.KmsgLogV1Alpha1) keep the node reporting. They are
appended after the Talos-generated documents, so those stay byte-identical to what
`talosctl gen config` makes; a cluster's `telemetry: false` leaves them out.
"""

from __future__ import annotations

from provisioner.talos import goyaml

__all__ = ["KMSG_LOG_NAME", "telemetry_documents"]

KMSG_LOG_NAME = "provisioner-kernel-log"


def telemetry_documents(events_endpoint: str, logs_url: str) -> str:
    """The two documents as YAML, starting with a `---` separator (to append to a config)."""
    docs = [
        {"apiVersion": "v1alpha1", "kind": "EventSinkConfig", "endpoint": events_endpoint},
        {"apiVersion": "v1alpha1", "kind": "KmsgLogConfig", "name": KMSG_LOG_NAME, "url": logs_url},
    ]
    return "---\n" + goyaml.dump_all(docs)
