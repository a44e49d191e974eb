"""Talos Linux integration: secrets, machine configs, validation, talosconfig, trustd, trust check.

Entry points (see each module): :func:`provisioner.talos.secrets.generate_bundle`,
:func:`provisioner.talos.config.generate_config`,
:func:`provisioner.talos.validate.validate_config`,
:func:`provisioner.talos.talosconfig.generate_talosconfig`,
:func:`provisioner.talos.trustd.start_trustd` and
:func:`provisioner.talos.trustcheck.check_trusted`.
"""

__all__: list[str] = []
