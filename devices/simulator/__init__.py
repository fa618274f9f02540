"""The field-device simulator: realistic Manggarai sensor traffic over MQTT, faults included.

Pure parts (no I/O): ``climate`` and ``signals`` (what devices measure), ``faults`` (which
messages go wrong), ``plan`` (who publishes, in which format), ``encoders`` (the wire
formats) and ``stream`` (the deterministic message sequence with each value's expected
fate). I/O parts: ``publisher`` (paho-mqtt, QoS 1, bounded in-flight), ``runner``
(pacing, manifest, summary) and ``cli`` (``kotaflow simulate``).
"""
