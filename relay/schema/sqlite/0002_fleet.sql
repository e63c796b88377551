-- Claims (several relay processes on one host), shared rate limits, per-device sequence gaps,
-- sightings with margins, the append-only audit log, and confirmed alerts shown as such.
ALTER TABLE deliveries ADD COLUMN held_at REAL;
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN claimed_until REAL;
UPDATE deliveries SET held_at = created_at WHERE status = 'held';
CREATE INDEX deliveries_held ON deliveries(status, recipient);
ALTER TABLE history ADD COLUMN margin REAL;
CREATE INDEX history_alert ON history(alert_id);
UPDATE alerts SET status = 'confirmed' WHERE status = 'open' AND reviewed_by IS NOT NULL;

CREATE TABLE sends (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX sends_recipient ON sends(recipient, at);
CREATE INDEX sends_at ON sends(at);

CREATE TABLE device_seq (
    device_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    n INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (device_id, stream, n)
) WITHOUT ROWID;
CREATE INDEX device_seq_age ON device_seq(received_at);
CREATE TABLE seq_scan (
    device_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    checked_n INTEGER NOT NULL,
    PRIMARY KEY (device_id, stream)
);
CREATE TABLE seq_gaps (
    device_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    first_n INTEGER NOT NULL,
    last_n INTEGER NOT NULL,
    reported_at REAL NOT NULL,
    PRIMARY KEY (device_id, stream, first_n)
);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    reason TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON audit(at);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only: UPDATE is not allowed');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only: DELETE is not allowed');
END;
