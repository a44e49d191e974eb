"""Telemetry from Talos nodes: the event sink (gRPC) and the kernel-log receiver (JSON lines).

`decode` and `kmsg` are pure; `sink` and `logs` are the listeners; `service` attributes
what arrives to machines and hands it to the event log and the per-machine log rings.
"""
