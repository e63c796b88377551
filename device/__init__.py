"""The device runtime (`lookout run`): camera frames in, match events out over MQTT.

One module per idea: ``config`` (the config file), ``sources`` (frames), ``tracker``,
``decision``, ``cooldown``, ``outbox`` (durable delivery), ``publisher`` (transports),
``status`` (status, heartbeat, metrics figures), ``runtime`` (lifecycle: start, wire,
stop), ``gallery_swap`` (load, verify and swap galleries), ``frame_loop`` (the per-frame
work), ``emitter`` (decisions to events), ``tuning`` (settings changed while running),
``videomaker``, ``tail``, ``check``, ``cli``. The face models run through the core's
``lookout.face.pipeline``; the gallery comes through ``lookout.gallery``; this part never
imports ``lookout.sync``. See docs/device.md.
"""
