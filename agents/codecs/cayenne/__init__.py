"""Cayenne Low Power Payload (myDevices): a generic format many devices and firmwares speak."""
