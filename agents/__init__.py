"""Southbound IoT agents: transports (MQTT, HTTP, LoRaWAN), payload codecs, the device registry, the FIWARE-compatible provisioning API and the mapping of measures to Smart Data Model entities."""
