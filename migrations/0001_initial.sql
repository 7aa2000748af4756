-- blendd schema 1: job outcomes, their rankings and fusions, the event outbox, the worker fleet.
-- Applied by `blendd migrate` inside one transaction; never edit after release, add 0002_….

-- One row per job outcome. job_id is the producer's idempotency key: a redelivered job
-- finds its row here and is not computed again.
CREATE TABLE jobs (
    job_id           text PRIMARY KEY,
    status           text NOT NULL CHECK (status IN ('completed', 'failed', 'rejected')),
    attempts         integer NOT NULL DEFAULT 1,
    error            text,
    violations       jsonb,
    instruction      text,
    input            text,
    rank_mode        text,
    fuse_options     jsonb,
    metadata         jsonb,
    kafka_topic      text,
    kafka_partition  integer,
    kafka_offset     bigint,
    worker_id        text NOT NULL,
    ranker           text,
    fuser            text,
    timings_ms       jsonb,
    received_at      timestamptz,
    finished_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_finished_at ON jobs (finished_at);
CREATE INDEX jobs_status_finished_at ON jobs (status, finished_at) WHERE status <> 'completed';

-- The candidates of a job with their ranking (1 = best; ties share the best rank).
CREATE TABLE candidates (
    job_id  text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    idx     integer NOT NULL CHECK (idx >= 0),
    model   text NOT NULL,
    text    text NOT NULL,
    rank    integer CHECK (rank >= 1),
    score   double precision,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX candidates_model ON candidates (model);

-- Pairwise logits ℓ(a, b): candidate a in the first slot, b in the second; > 0 means a is better.
CREATE TABLE comparisons (
    job_id  text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    a       integer NOT NULL,
    b       integer NOT NULL CHECK (a <> b),
    logit   real NOT NULL,
    PRIMARY KEY (job_id, a, b)
);

-- The fused answer; fuser 'top1' means no fuser was configured and the best candidate was returned.
CREATE TABLE fusions (
    job_id            text PRIMARY KEY REFERENCES jobs (job_id) ON DELETE CASCADE,
    text              text NOT NULL,
    fuser             text NOT NULL,
    top_k             integer NOT NULL,
    source_indexes    integer[] NOT NULL,
    generated_tokens  integer NOT NULL DEFAULT 0
);

-- Transactional outbox: written in the same transaction as the results, published by a
-- relay, then marked sent. Holds completion events and the dead-letter copies of rejected
-- messages (payload is bytes: a rejected message need not be JSON). A relay claims rows for
-- a while; a crashed relay's claims expire and another worker publishes them.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    event_id       text NOT NULL UNIQUE,
    job_id         text NOT NULL,
    topic          text NOT NULL,
    key            text NOT NULL,
    payload        bytea NOT NULL,
    headers        jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    attempts       integer NOT NULL DEFAULT 0,
    claimed_until  timestamptz,
    last_error     text,
    sent_at        timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;

-- The worker fleet, kept current by heartbeats; rows of dead workers age out.
CREATE TABLE workers (
    worker_id            text PRIMARY KEY,
    host                 text NOT NULL,
    pid                  integer NOT NULL,
    state                text NOT NULL,
    started_at           timestamptz NOT NULL DEFAULT now(),
    last_heartbeat       timestamptz NOT NULL DEFAULT now(),
    assigned_partitions  jsonb NOT NULL DEFAULT '[]',
    in_flight            integer NOT NULL DEFAULT 0,
    jobs_completed       bigint NOT NULL DEFAULT 0,
    ranker               text,
    fuser                text,
    version              text
);

-- One row per job: its outcome, ranked candidates (best first) and fused text.
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

-- Win rates of the source LLMs over completed jobs: how often each model's answer ranked
-- first, its mean rank, and its share of pairwise comparisons won.
CREATE VIEW model_leaderboard AS
WITH ranked AS (
    SELECT c.model, c.rank, c.job_id
      FROM candidates c JOIN jobs j ON j.job_id = c.job_id
     WHERE j.status = 'completed' AND c.rank IS NOT NULL
), pairwise AS (
    SELECT ca.model,
           count(*) AS comparisons,
           count(*) FILTER (WHERE cmp.logit > 0) AS wins
      FROM comparisons cmp
      JOIN candidates ca ON ca.job_id = cmp.job_id AND ca.idx = cmp.a
     GROUP BY ca.model
)
SELECT r.model,
       count(DISTINCT r.job_id) AS jobs,
       count(*) FILTER (WHERE r.rank = 1) AS first_places,
       round(count(*) FILTER (WHERE r.rank = 1)::numeric / count(*), 4) AS win_rate,
       round(avg(r.rank)::numeric, 3) AS mean_rank,
       p.comparisons AS pairwise_comparisons,
       round(p.wins::numeric / NULLIF(p.comparisons, 0), 4) AS pairwise_win_rate
  FROM ranked r
  LEFT JOIN pairwise p ON p.model = r.model
 GROUP BY r.model, p.comparisons, p.wins
 ORDER BY win_rate DESC, mean_rank ASC;
