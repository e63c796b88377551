-- The shared relay store. Times are UNIX seconds (double precision), as in the SQLite store.
CREATE TABLE seen_events (
    event_id uuid PRIMARY KEY,
    received_at double precision NOT NULL
);
CREATE INDEX seen_events_age ON seen_events (received_at);

CREATE TABLE alerts (
    id bigserial PRIMARY KEY,
    gallery_id text NOT NULL,
    person_id text NOT NULL,
    status text NOT NULL,
    first_seen_at double precision NOT NULL,
    last_seen_at double precision NOT NULL,
    created_at double precision NOT NULL,
    sightings integer NOT NULL DEFAULT 1,
    devices text[] NOT NULL,
    best_score double precision NOT NULL,
    stale boolean NOT NULL DEFAULT false,
    event text NOT NULL,
    crop bytea,
    reviewed_by text,
    reviewed_at double precision,
    review_reason text
);
CREATE INDEX alerts_person ON alerts (gallery_id, person_id, first_seen_at);
CREATE INDEX alerts_status ON alerts (status, id);

CREATE TABLE deliveries (
    id bigserial PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    recipient text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    created_at double precision NOT NULL,
    next_attempt_at double precision NOT NULL,
    sent_at double precision,
    held_at double precision,
    last_error text,
    provider_id text,
    claimed_by text,
    claimed_until double precision
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX deliveries_held ON deliveries (recipient, id) WHERE status = 'held';
CREATE INDEX deliveries_alert ON deliveries (alert_id);

CREATE TABLE history (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    device_id text NOT NULL,
    person_id text NOT NULL,
    score double precision NOT NULL,
    margin double precision,
    seen_at double precision NOT NULL,
    received_at double precision NOT NULL,
    outcome text NOT NULL,
    alert_id bigint
);
CREATE INDEX history_age ON history (received_at);
CREATE INDEX history_alert ON history (alert_id);

CREATE TABLE suppressions (
    person_id text NOT NULL,
    device_id text NOT NULL,
    until double precision NOT NULL,
    alert_id bigint,
    reason text,
    PRIMARY KEY (person_id, device_id)
);

-- The rate-limit ledger every relay counts against (sends and summaries, by recipient).
CREATE TABLE sends (
    id bigserial PRIMARY KEY,
    recipient text NOT NULL,
    at double precision NOT NULL
);
CREATE INDEX sends_recipient ON sends (recipient, at);
CREATE INDEX sends_at ON sends (at);

-- Per-device sequence numbers (event field seq), for gap detection across relays.
CREATE TABLE device_seq (
    device_id text NOT NULL,
    stream text NOT NULL,
    n bigint NOT NULL,
    received_at double precision NOT NULL,
    PRIMARY KEY (device_id, stream, n)
);
CREATE INDEX device_seq_age ON device_seq (received_at);
CREATE TABLE seq_scan (
    device_id text NOT NULL,
    stream text NOT NULL,
    checked_n bigint NOT NULL,
    PRIMARY KEY (device_id, stream)
);
CREATE TABLE seq_gaps (
    device_id text NOT NULL,
    stream text NOT NULL,
    first_n bigint NOT NULL,
    last_n bigint NOT NULL,
    reported_at double precision NOT NULL,
    PRIMARY KEY (device_id, stream, first_n)
);

-- Who did what, when and why: reviews (CLI and console), searches, gallery changes. Append-only,
-- enforced here so that no code path (or operator with the relay's credentials) can rewrite it.
CREATE TABLE audit (
    id bigserial PRIMARY KEY,
    at double precision NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    subject text NOT NULL,
    reason text,
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON audit (at);
CREATE FUNCTION lookout_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only: % is not allowed', TG_OP;
END
$$;
CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION lookout_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION lookout_audit_append_only();

-- Accept a batch of validated events in one round trip, with the same rules as the SQLite store
-- (relay/sqlite_store.py): idempotency by event id, suppression, sighting dedup within p_window
-- seconds of an alert's first sighting, by any device. One transaction-scoped advisory lock per
-- (gallery, person), taken in key order before anything else: two relays can never both create an
-- alert for one sighting window, and batches that share people cannot deadlock.
CREATE FUNCTION lookout_ingest(
    p_event_ids uuid[], p_devices text[], p_persons text[], p_galleries text[],
    p_seen double precision[], p_scores double precision[], p_margins double precision[],
    p_stale boolean[], p_events text[], p_crops bytea[], p_review boolean[], p_recipients text[],
    p_streams text[], p_seqs bigint[], p_now double precision, p_window double precision
) RETURNS TABLE (r_ord integer, r_outcome text, r_alert_id bigint, r_review boolean)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    k bigint;
    found_id bigint;
    found_status text;
BEGIN
    FOR k IN
        SELECT DISTINCT hashtextextended(t.g || E'\x1f' || t.p, 0) AS key
        FROM unnest(p_galleries, p_persons) AS t (g, p) ORDER BY key
    LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(p_event_ids, 1), 0) LOOP
        r_ord := i;
        INSERT INTO seen_events (event_id, received_at) VALUES (p_event_ids[i], p_now) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            r_outcome := 'duplicate'; r_alert_id := NULL; r_review := false;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF p_seqs[i] IS NOT NULL THEN
            INSERT INTO device_seq (device_id, stream, n, received_at)
            VALUES (p_devices[i], p_streams[i], p_seqs[i], p_now) ON CONFLICT DO NOTHING;
        END IF;
        IF EXISTS (SELECT 1 FROM suppressions s
                   WHERE s.person_id = p_persons[i] AND s.device_id = p_devices[i] AND s.until > p_now) THEN
            INSERT INTO history (event_id, device_id, person_id, score, margin, seen_at, received_at, outcome, alert_id)
            VALUES (p_event_ids[i], p_devices[i], p_persons[i], p_scores[i], p_margins[i], p_seen[i], p_now,
                    'suppressed', NULL);
            r_outcome := 'suppressed'; r_alert_id := NULL; r_review := false;
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT a.id, a.status INTO found_id, found_status FROM alerts a
        WHERE a.gallery_id = p_galleries[i] AND a.person_id = p_persons[i]
          AND a.first_seen_at BETWEEN p_seen[i] - p_window AND p_seen[i] + p_window
          AND a.status <> 'rejected'
        ORDER BY abs(a.first_seen_at - p_seen[i]) LIMIT 1;
        IF found_id IS NOT NULL THEN
            UPDATE alerts SET
                sightings = sightings + 1,
                devices = CASE WHEN p_devices[i] = ANY (devices) THEN devices
                               ELSE array_append(devices, p_devices[i]) END,
                last_seen_at = greatest(last_seen_at, p_seen[i]),
                first_seen_at = least(first_seen_at, p_seen[i]),
                best_score = greatest(best_score, p_scores[i])
            WHERE id = found_id;
            INSERT INTO history (event_id, device_id, person_id, score, margin, seen_at, received_at, outcome, alert_id)
            VALUES (p_event_ids[i], p_devices[i], p_persons[i], p_scores[i], p_margins[i], p_seen[i], p_now,
                    'followup', found_id);
            r_outcome := 'followup'; r_alert_id := found_id; r_review := found_status = 'review';
            RETURN NEXT;
            CONTINUE;
        END IF;
        INSERT INTO alerts (gallery_id, person_id, status, first_seen_at, last_seen_at, created_at, devices,
                            best_score, stale, event, crop)
        VALUES (p_galleries[i], p_persons[i], CASE WHEN p_review[i] THEN 'review' ELSE 'open' END,
                p_seen[i], p_seen[i], p_now, ARRAY[p_devices[i]], p_scores[i], p_stale[i], p_events[i], p_crops[i])
        RETURNING id INTO found_id;
        INSERT INTO deliveries (alert_id, recipient, status, created_at, next_attempt_at)
        SELECT found_id, r.name, CASE WHEN p_review[i] THEN 'waiting' ELSE 'pending' END, p_now, p_now
        FROM jsonb_array_elements_text(p_recipients[i]::jsonb) AS r (name);
        INSERT INTO history (event_id, device_id, person_id, score, margin, seen_at, received_at, outcome, alert_id)
        VALUES (p_event_ids[i], p_devices[i], p_persons[i], p_scores[i], p_margins[i], p_seen[i], p_now,
                'alert', found_id);
        r_outcome := 'alert'; r_alert_id := found_id; r_review := p_review[i];
        RETURN NEXT;
    END LOOP;
END
$$;
