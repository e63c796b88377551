"""The device runtime (`lookout run`): camera frames in, match events out over MQTT.

One module per idea: ``config`` (the config file), ``sources`` (frames), ``recognizer``
(async detection/embedding), ``tracker``, ``decision``, ``cooldown``, ``outbox`` (durable
delivery), ``publisher`` (transports), ``status`` (status, heartbeat, metrics figures),
``runtime`` (the loop), ``videomaker``, ``tail``, ``check``, ``cli``. The gallery it searches
comes through the core's ``lookout.gallery``; this part never imports ``lookout.sync``.
See docs/device.md.
"""
