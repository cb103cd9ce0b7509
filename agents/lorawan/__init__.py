"""LoRaWAN: what a network server hands over, and the vendor codecs that read it.

    network server (TTS v3, ChirpStack v4)
        | uplink envelope (MQTT topic or webhook JSON)  -> tts.py, chirpstack.py -> envelope.Uplink
        v
    codec (agents/codecs/<vendor>/<model>.py)        -> contract.Decoded {data, warnings, errors}
        | decode_uplink(payload, fport), the LoRa Alliance TS013 contract
        v
    device profile (data: key -> Smart Data Model attribute, unit, conversion)  -> measures.py
        | the mapping engine (agents.mapping.engine)
        v
    AirQualityObserved / NoiseLevelObserved / WeatherObserved + Device entities

A codec is chosen by its id (`<vendor>/<model>`, catalog.py); integrators pick a
device by vendor and model and never write a decoder. Downlinks go the other way:
`encode_downlink(command)` of the codec, then the network server's downlink
envelope (`tts.downlink`, `chirpstack.downlink`).

`provisioning.py` reads a device's `internal_attributes.lorawan` (IoTagent-LoRaWAN's
shape plus the codec id). The I/O around these pure pieces is elsewhere: the
registry lookups in agents.registry.lorawan, the ingest in agents.ingest_lorawan,
the transports in agents.transports.lorawan_mqtt / lorawan_http, the downlinks in
agents.commands.lorawan.
"""
