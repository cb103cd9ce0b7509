"""The demo: a simulated fleet in four pilot towns, provisioned and sent through the real agents over MQTT."""
