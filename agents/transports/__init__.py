"""Southbound transports (MQTT, HTTP) and the intake that makes what they receive durable."""
