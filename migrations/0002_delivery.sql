-- blendd schema 2: an outbox that never blocks on one row, keys and values kept as bytes,
-- metadata kept exactly as written, and a NOTIFY that wakes the relays.

-- Per-row retry state. A transient publish failure sets next_attempt_at (backoff per row);
-- a permanent one (too large, invalid record or topic, authorization, policy) sets failed_at
-- with the error and its class, and the relay goes on with the other rows.
ALTER TABLE outbox
    ADD COLUMN next_attempt_at  timestamptz,
    ADD COLUMN failed_at        timestamptz,
    ADD COLUMN error_class      text CHECK (error_class IN ('transient', 'permanent'));

-- Kafka keys and values are bytes: a dead-letter copy carries the original record's key
-- (possibly not UTF-8, possibly absent) and value (possibly null) unchanged.
ALTER TABLE outbox ALTER COLUMN key TYPE bytea USING convert_to(key, 'UTF8');
ALTER TABLE outbox ALTER COLUMN key DROP NOT NULL;
ALTER TABLE outbox ALTER COLUMN payload DROP NOT NULL;

DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL AND failed_at IS NULL;

-- Metadata as the job wrote it: json keeps numbers as written (18446744073709551617, 1e400,
-- -0, 1.0), which jsonb would normalise. The view is rebuilt around the new column type.
DROP VIEW blend_results;
ALTER TABLE jobs ALTER COLUMN metadata TYPE json USING metadata::json;
CREATE VIEW blend_results AS
SELECT j.job_id,
       j.status,
       j.error,
       j.instruction,
       j.input,
       j.ranker,
       j.fuser,
       j.metadata,
       j.finished_at,
       f.text AS fused_text,
       f.source_indexes AS fused_from,
       (SELECT jsonb_agg(jsonb_build_object('index', c.idx, 'model', c.model, 'rank', c.rank, 'score', c.score, 'text', c.text)
                         ORDER BY c.rank NULLS LAST, c.idx)
          FROM candidates c WHERE c.job_id = j.job_id) AS ranking,
       (SELECT c.model FROM candidates c WHERE c.job_id = j.job_id AND c.rank = 1 ORDER BY c.idx LIMIT 1) AS best_model
  FROM jobs j
  LEFT JOIN fusions f ON f.job_id = j.job_id;

-- Relays LISTEN on blendd_outbox: every transaction that adds outbox rows wakes them once
-- at commit (notifications of one transaction are folded into one).
CREATE FUNCTION blendd_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('blendd_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION blendd_outbox_notify();
