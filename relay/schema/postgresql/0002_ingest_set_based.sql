-- lookout_ingest with the per-batch work done set-based (idempotency, sequence numbers, suppressions,
-- deliveries, history): only finding or creating the alert stays per event. Same rules, same results;
-- about half the server CPU per event.
CREATE OR REPLACE FUNCTION lookout_ingest(
    p_event_ids uuid[], p_devices text[], p_persons text[], p_galleries text[],
    p_seen double precision[], p_scores double precision[], p_margins double precision[],
    p_stale boolean[], p_events text[], p_crops bytea[], p_review boolean[], p_recipients text[],
    p_streams text[], p_seqs bigint[], p_now double precision, p_window double precision
) RETURNS TABLE (r_ord integer, r_outcome text, r_alert_id bigint, r_review boolean)
LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_event_ids, 1), 0);
    i integer;
    k bigint;
    found_id bigint;
    found_status text;
    new_ids uuid[];
    taken uuid[] := '{}';
    suppressed text[];
    outcome text[] := array_fill('duplicate'::text, ARRAY[n]);
    alert bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    review boolean[] := array_fill(false, ARRAY[n]);
    created integer[] := '{}';
BEGIN
    FOR k IN
        SELECT DISTINCT hashtextextended(t.g || E'\x1f' || t.p, 0) AS key
        FROM unnest(p_galleries, p_persons) AS t (g, p) ORDER BY key
    LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
    WITH ins AS (
        INSERT INTO seen_events (event_id, received_at)
        SELECT DISTINCT e, p_now FROM unnest(p_event_ids) AS e
        ON CONFLICT DO NOTHING RETURNING event_id
    ) SELECT coalesce(array_agg(event_id), '{}') INTO new_ids FROM ins;
    INSERT INTO device_seq (device_id, stream, n, received_at)
    SELECT DISTINCT t.d, t.s, t.q, p_now FROM unnest(p_event_ids, p_devices, p_streams, p_seqs) AS t (e, d, s, q)
    WHERE t.q IS NOT NULL AND t.e = ANY (new_ids)
    ON CONFLICT DO NOTHING;
    SELECT coalesce(array_agg(s.person_id || E'\x1f' || s.device_id), '{}') INTO suppressed
    FROM suppressions s
    WHERE s.until > p_now AND s.person_id = ANY (p_persons) AND s.device_id = ANY (p_devices);
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN NOT (p_event_ids[i] = ANY (new_ids)) OR p_event_ids[i] = ANY (taken);
        taken := taken || p_event_ids[i];
        IF p_persons[i] || E'\x1f' || p_devices[i] = ANY (suppressed) THEN
            outcome[i] := 'suppressed';
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
            outcome[i] := 'followup'; alert[i] := found_id; review[i] := found_status = 'review';
            CONTINUE;
        END IF;
        INSERT INTO alerts (gallery_id, person_id, status, first_seen_at, last_seen_at, created_at, devices,
                            best_score, stale, event, crop)
        VALUES (p_galleries[i], p_persons[i], CASE WHEN p_review[i] THEN 'review' ELSE 'open' END,
                p_seen[i], p_seen[i], p_now, ARRAY[p_devices[i]], p_scores[i], p_stale[i], p_events[i], p_crops[i])
        RETURNING id INTO found_id;
        outcome[i] := 'alert'; alert[i] := found_id; review[i] := p_review[i];
        created := created || i;
    END LOOP;
    INSERT INTO deliveries (alert_id, recipient, status, created_at, next_attempt_at)
    SELECT alert[c], r.name, CASE WHEN p_review[c] THEN 'waiting' ELSE 'pending' END, p_now, p_now
    FROM unnest(created) AS c, jsonb_array_elements_text(p_recipients[c]::jsonb) AS r (name);
    INSERT INTO history (event_id, device_id, person_id, score, margin, seen_at, received_at, outcome, alert_id)
    SELECT p_event_ids[g], p_devices[g], p_persons[g], p_scores[g], p_margins[g], p_seen[g], p_now, outcome[g], alert[g]
    FROM generate_series(1, n) AS g WHERE outcome[g] <> 'duplicate' ORDER BY g;
    RETURN QUERY SELECT g, outcome[g], alert[g], review[g] FROM generate_series(1, n) AS g;
END
$$;
