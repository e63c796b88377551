-- The console's fleet page asks for each device's last sighting.
CREATE INDEX history_device ON history(device_id, seen_at);
