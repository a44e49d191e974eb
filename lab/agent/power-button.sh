#!/bin/sh
echo "LAB-AGENT: ACPI power button: powering off" > /dev/console
sync
poweroff -f
