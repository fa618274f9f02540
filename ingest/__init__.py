"""MQTT -> Kafka bridge: every device message lands in the raw topic, nothing is lost."""
