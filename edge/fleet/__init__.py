"""The fleet's side of MQTT: tools that read every bin on a broker (``smartbin fleet …``)."""
