"""The device runtime (`lookout run`): camera frames in, match events out over MQTT.

One module per idea: ``config`` (the config file), ``sources`` (frames), ``recognizer``
(async detection/embedding), ``tracker``, ``decision``, ``cooldown``, ``outbox`` (durable
delivery), ``publisher`` (transports), ``status`` (status, heartbeat, metrics),
``runtime`` (the loop), ``videomaker``, ``tail``, ``bench``, ``check``, ``cli``.
See docs/device.md.
"""
