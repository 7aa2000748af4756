-- blendd schema 4: a job's pairwise logits as one row, its matrix, instead of one row per ordered
-- pair. A batch of 32 jobs of 6 candidates wrote 960 comparison rows, each with its own foreign-key
-- check and primary-key entry, which made up most of the time to store the batch; one row per job
-- costs 32. `comparisons` stays queryable as a view with the same columns, types and values.

-- ℓ(a, b) of every ordered pair a ≠ b of a job's size candidates, a outer and b inner (the order of
-- ComparisonMatrix.orderedPairs): size × (size − 1) values, none NULL.
CREATE TABLE comparison_matrices (
    job_id  text PRIMARY KEY REFERENCES jobs (job_id) ON DELETE CASCADE,
    size    integer NOT NULL CHECK (size >= 2),
    logits  real[] NOT NULL CHECK (array_ndims(logits) = 1 AND array_lower(logits, 1) = 1
                                   AND array_length(logits, 1) = size * (size - 1) AND array_position(logits, NULL) IS NULL)
);

-- Rows written by earlier versions move over; every job's rows form its whole matrix, because the
-- worker always wrote all ordered pairs. A job whose rows do not (edited by hand) stops the migration
-- rather than losing them.
DO $$
DECLARE
    bad text;
BEGIN
    SELECT job_id INTO bad FROM comparisons GROUP BY job_id
    HAVING min(least(a, b)) < 0 OR count(*) <> (greatest(max(a), max(b)) + 1) * greatest(max(a), max(b))
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'comparisons of job % do not form a whole matrix (every ordered pair of its candidates once)', bad;
    END IF;
END
$$;
INSERT INTO comparison_matrices (job_id, size, logits)
SELECT job_id, greatest(max(a), max(b)) + 1, array_agg(logit ORDER BY a, b)
  FROM comparisons GROUP BY job_id;
-- model_leaderboard reads comparisons: it is dropped with the table and created again, unchanged, on the view.
DROP VIEW model_leaderboard;
DROP TABLE comparisons;

-- Pairwise logits ℓ(a, b): candidate a in the first slot, b in the second; > 0 means a is better.
-- The pair (a, b) is element a·(size − 1) + b + 1 of the matrix, less one when b > a (no diagonal).
CREATE VIEW comparisons AS
SELECT m.job_id, pa.a, pb.b, m.logits[pa.a * (m.size - 1) + pb.b + (pb.b < pa.a)::integer] AS logit
  FROM comparison_matrices m
 CROSS JOIN LATERAL generate_series(0, m.size - 1) AS pa(a)
 CROSS JOIN LATERAL generate_series(0, m.size - 1) AS pb(b)
 WHERE pa.a <> pb.b;

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
