-- blendd schema 3: job kinds. A job is a blend (rank, then fuse: the tables of 0001), a compare
-- (judge A-versus-B pairs), a best_of_n / worst_of_n (pick one candidate) or a reward (one scalar
-- per candidate against a reference). Each kind's answer is written in the transaction that writes
-- the job row and its outbox event, and each kind has a view to query.

ALTER TABLE jobs ADD COLUMN task text NOT NULL DEFAULT 'blend'
    CHECK (task IN ('blend', 'compare', 'best_of_n', 'worst_of_n', 'reward'));
CREATE INDEX jobs_task_finished_at ON jobs (task, finished_at);

-- The verdict on each pair of a compare job. a and b are the texts judged (a conversation pair's
-- flattened assistant turns, its turns kept in conversation); source is what they were judged
-- against (instruction + input, or the flattened dialogue). logit > 0 means A is better in every
-- mode (blendd's documented reading); reference_logit is what the reference's
-- Blender.compare(return_logits=True) returns (the sum of both orientations, ℓ(B,A) un-negated
-- in [B,A]); probability is TRL PairRMJudge's (return_scores=True) that A is better.
CREATE TABLE pair_judgements (
    job_id           text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    idx              integer NOT NULL CHECK (idx >= 0),
    mode             text NOT NULL CHECK (mode IN ('[A,B]', '[B,A]', '[A,B]+[B,A]')),
    source           text NOT NULL,
    a                text NOT NULL,
    b                text NOT NULL,
    conversation     jsonb,
    logit            real NOT NULL,
    reference_logit  real NOT NULL,
    probability      double precision NOT NULL CHECK (probability BETWEEN 0 AND 1),
    verdict          text NOT NULL CHECK (verdict IN ('a', 'b', 'tie')),
    PRIMARY KEY (job_id, idx)
);

-- The candidate a best_of_n / worst_of_n job chose (its text is in candidates). A bubble selection
-- keeps [winner] + losers in elimination order; a full one the scores it chose on.
CREATE TABLE selections (
    job_id             text PRIMARY KEY REFERENCES jobs (job_id) ON DELETE CASCADE,
    goal               text NOT NULL CHECK (goal IN ('best', 'worst')),
    method             text NOT NULL CHECK (method IN ('bubble', 'full')),
    idx                integer NOT NULL CHECK (idx >= 0),
    elimination_order  integer[],
    scores             double precision[],
    forward_passes     integer NOT NULL
);

-- The reference of a reward job: a candidate chosen by a rule, or a text the job gave.
CREATE TABLE reward_references (
    job_id          text PRIMARY KEY REFERENCES jobs (job_id) ON DELETE CASCADE,
    mode            text CHECK (mode IN ('longest', 'shortest', 'median_length', 'first', 'last')),
    idx             integer CHECK (idx >= 0),
    text            text,
    forward_passes  integer NOT NULL,
    CHECK ((mode IS NOT NULL AND idx IS NOT NULL AND text IS NULL) OR (mode IS NULL AND idx IS NULL AND text IS NOT NULL))
);

-- One reward per candidate; > 0 means the candidate beats the reference.
CREATE TABLE rewards (
    job_id  text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    idx     integer NOT NULL CHECK (idx >= 0),
    reward  double precision NOT NULL,
    PRIMARY KEY (job_id, idx)
);

-- One row per pair of each compare job (one row with NULL pair columns for a failed job).
CREATE VIEW compare_results AS
SELECT j.job_id, j.status, j.error, j.ranker, j.metadata, j.finished_at,
       p.idx AS pair, p.mode, p.a, p.b, p.logit, p.reference_logit, p.probability, p.verdict, p.conversation, p.source
  FROM jobs j
  LEFT JOIN pair_judgements p ON p.job_id = j.job_id
 WHERE j.task = 'compare';

-- One row per best_of_n job: the chosen candidate.
CREATE VIEW best_of_n_results AS
SELECT j.job_id, j.status, j.error, j.ranker, j.instruction, j.input, j.metadata, j.finished_at,
       s.method, s.idx AS selected, c.model AS selected_model, c.text AS selected_text,
       s.elimination_order, s.scores, s.forward_passes
  FROM jobs j
  LEFT JOIN selections s ON s.job_id = j.job_id
  LEFT JOIN candidates c ON c.job_id = j.job_id AND c.idx = s.idx
 WHERE j.task = 'best_of_n';

-- The same for worst_of_n jobs.
CREATE VIEW worst_of_n_results AS
SELECT j.job_id, j.status, j.error, j.ranker, j.instruction, j.input, j.metadata, j.finished_at,
       s.method, s.idx AS selected, c.model AS selected_model, c.text AS selected_text,
       s.elimination_order, s.scores, s.forward_passes
  FROM jobs j
  LEFT JOIN selections s ON s.job_id = j.job_id
  LEFT JOIN candidates c ON c.job_id = j.job_id AND c.idx = s.idx
 WHERE j.task = 'worst_of_n';

-- One row per candidate of each reward job, with the reference it was scored against.
CREATE VIEW reward_results AS
SELECT j.job_id, j.status, j.error, j.ranker, j.metadata, j.finished_at,
       c.idx, c.model, c.text, r.reward,
       f.mode AS reference_mode, f.idx AS reference_index, f.text AS reference_text, f.forward_passes
  FROM jobs j
  LEFT JOIN candidates c ON c.job_id = j.job_id
  LEFT JOIN rewards r ON r.job_id = c.job_id AND r.idx = c.idx
  LEFT JOIN reward_references f ON f.job_id = j.job_id
 WHERE j.task = 'reward';
