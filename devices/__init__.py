"""What devices are and what they send: catalogue, registry, payload decoders, simulator."""
