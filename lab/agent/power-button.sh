#!/bin/sh
{ [ -c /dev/ttyS0 ] && echo "LAB-AGENT: ACPI power button: powering off" > /dev/ttyS0; } || echo "LAB-AGENT: ACPI power button: powering off" > /dev/console
sync
poweroff -f
