-- The relay store as first released (before versioned migrations): IF NOT EXISTS, so a store
-- written by that version is adopted as version 1 unchanged.
CREATE TABLE IF NOT EXISTS seen_events (
    event_id TEXT PRIMARY KEY,
    received_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_events_age ON seen_events(received_at);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    gallery_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    status TEXT NOT NULL,
    first_seen_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    created_at REAL NOT NULL,
    sightings INTEGER NOT NULL DEFAULT 1,
    devices TEXT NOT NULL,
    best_score REAL NOT NULL,
    stale INTEGER NOT NULL DEFAULT 0,
    event TEXT NOT NULL,
    crop BLOB,
    reviewed_by TEXT,
    reviewed_at REAL,
    review_reason TEXT
);
CREATE INDEX IF NOT EXISTS alerts_person ON alerts(gallery_id, person_id, first_seen_at);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    recipient TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    sent_at REAL,
    last_error TEXT,
    provider_id TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_alert ON deliveries(alert_id);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    score REAL NOT NULL,
    seen_at REAL NOT NULL,
    received_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    alert_id INTEGER
);
CREATE INDEX IF NOT EXISTS history_age ON history(received_at);
CREATE TABLE IF NOT EXISTS suppressions (
    person_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    until REAL NOT NULL,
    alert_id INTEGER,
    reason TEXT,
    PRIMARY KEY (person_id, device_id)
);
