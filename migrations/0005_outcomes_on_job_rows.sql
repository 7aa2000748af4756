-- blendd schema 5: a job's candidates, comparison matrix and fusion live on its jobs row, as arrays
-- and columns, instead of in rows of their own. Storing a batch of 32 jobs of 6 candidates wrote 192
-- candidate rows, 32 matrix rows and 32 fusion rows beside the 32 job rows, each with its own
-- primary-key entry and foreign-key check, which made up most of the server's time for the batch.
-- `candidates`, `comparison_matrices`, `fusions` and `comparisons` stay queryable as views with the
-- same columns, types and values; the views over them are created again, unchanged.

-- The candidates in job order: element i + 1 is candidate idx i. Texts and models are never NULL;
-- ranks and scores are NULL until the job is ranked (1 = best; ties share the best rank). A job
-- without candidates (a compare job, a rejected one) has all four NULL.
ALTER TABLE jobs
    ADD COLUMN candidate_models         text[],
    ADD COLUMN candidate_texts          text[],
    ADD COLUMN candidate_ranks          integer[],
    ADD COLUMN candidate_scores         double precision[],
    -- ℓ(a, b) of every ordered pair a ≠ b of comparison_size candidates, a outer and b inner
    -- (ComparisonMatrix.orderedPairs), as migration 0004's comparison_matrices held them.
    ADD COLUMN comparison_size          integer,
    ADD COLUMN comparison_logits        real[],
    -- The fused answer; fusion_fuser 'top1' means no fuser was configured and the best candidate was returned.
    ADD COLUMN fusion_text              text,
    ADD COLUMN fusion_fuser             text,
    ADD COLUMN fusion_top_k             integer,
    ADD COLUMN fusion_source_indexes    integer[],
    ADD COLUMN fusion_generated_tokens  integer,
    -- A malformed array (wrong dimensions or lower bound, lengths that disagree, a NULL where the
    -- tables had NOT NULL) is refused: coalesce turns an unknown shape into a violation.
    ADD CONSTRAINT jobs_candidates_shape CHECK (
        num_nulls(candidate_models, candidate_texts, candidate_ranks, candidate_scores) = 4
        OR coalesce(array_ndims(candidate_models) = 1 AND array_lower(candidate_models, 1) = 1
                    AND array_position(candidate_models, NULL) IS NULL
                    AND array_dims(candidate_texts) = array_dims(candidate_models)
                    AND array_position(candidate_texts, NULL) IS NULL
                    AND (candidate_ranks IS NULL OR array_dims(candidate_ranks) = array_dims(candidate_models))
                    AND (candidate_scores IS NULL OR array_dims(candidate_scores) = array_dims(candidate_models)), false)),
    ADD CONSTRAINT jobs_candidate_ranks_positive CHECK ((1 <= ALL (candidate_ranks)) IS NOT FALSE),
    ADD CONSTRAINT jobs_comparison_matrix_shape CHECK (
        num_nulls(comparison_size, comparison_logits) = 2
        OR coalesce(comparison_size >= 2 AND array_ndims(comparison_logits) = 1 AND array_lower(comparison_logits, 1) = 1
                    AND array_length(comparison_logits, 1) = comparison_size * (comparison_size - 1)
                    AND array_position(comparison_logits, NULL) IS NULL, false)),
    ADD CONSTRAINT jobs_fusion_whole CHECK (
        num_nulls(fusion_text, fusion_fuser, fusion_top_k, fusion_source_indexes, fusion_generated_tokens) IN (0, 5));

-- Rows written by earlier versions move over. Every job's candidates are idx 0 … n − 1, because
-- the worker always wrote them so; a job whose rows are not (edited by hand) stops the migration
-- rather than losing them.
DO $$
DECLARE
    bad text;
BEGIN
    SELECT job_id INTO bad FROM candidates GROUP BY job_id HAVING min(idx) <> 0 OR max(idx) <> count(*) - 1 LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'candidates of job % are not numbered 0 to n - 1 without gaps', bad;
    END IF;
END
$$;
-- One new version of each job row that has anything to move. A job whose candidates were all
-- unranked keeps NULL ranks and scores rather than arrays of NULLs; the view reads both the same.
UPDATE jobs j
   SET candidate_models = c.models, candidate_texts = c.texts,
       candidate_ranks = CASE WHEN c.ranked THEN c.ranks END, candidate_scores = CASE WHEN c.scored THEN c.scores END,
       comparison_size = m.size, comparison_logits = m.logits,
       fusion_text = f.text, fusion_fuser = f.fuser, fusion_top_k = f.top_k,
       fusion_source_indexes = f.source_indexes, fusion_generated_tokens = f.generated_tokens
  FROM jobs k
  LEFT JOIN (SELECT job_id, array_agg(model ORDER BY idx) AS models, array_agg(text ORDER BY idx) AS texts,
                    array_agg(rank ORDER BY idx) AS ranks, array_agg(score ORDER BY idx) AS scores,
                    count(rank) > 0 AS ranked, count(score) > 0 AS scored
               FROM candidates GROUP BY job_id) c ON c.job_id = k.job_id
  LEFT JOIN comparison_matrices m ON m.job_id = k.job_id
  LEFT JOIN fusions f ON f.job_id = k.job_id
 WHERE j.job_id = k.job_id AND (c.job_id IS NOT NULL OR m.job_id IS NOT NULL OR f.job_id IS NOT NULL);

-- Every view that reads the three tables goes, then the tables; the views come back on the columns.
DROP VIEW model_leaderboard, blend_results, best_of_n_results, worst_of_n_results, reward_results, comparisons;
DROP TABLE candidates, comparison_matrices, fusions;

-- The candidates of a job with their ranking (1 = best; ties share the best rank).
CREATE VIEW candidates AS
SELECT j.job_id, (c.n - 1)::integer AS idx, c.model, c.text, c.rank, c.score
  FROM jobs j
 CROSS JOIN LATERAL unnest(j.candidate_models, j.candidate_texts, j.candidate_ranks, j.candidate_scores)
       WITH ORDINALITY AS c(model, text, rank, score, n);

-- A job's pairwise logits as one row, its matrix (migration 0004).
CREATE VIEW comparison_matrices AS
SELECT job_id, comparison_size AS size, comparison_logits AS logits
  FROM jobs
 WHERE comparison_size IS NOT NULL;

-- The fused answer; fuser 'top1' means no fuser was configured and the best candidate was returned.
CREATE VIEW fusions AS
SELECT job_id, fusion_text AS text, fusion_fuser AS fuser, fusion_top_k AS top_k,
       fusion_source_indexes AS source_indexes, fusion_generated_tokens AS generated_tokens
  FROM jobs
 WHERE fusion_text IS NOT NULL;

-- Pairwise logits ℓ(a, b): candidate a in the first slot, b in the second; > 0 means a is better.
-- The pair (a, b) is element a·(size − 1) + b + 1 of the matrix, less one when b > a (no diagonal).
CREATE VIEW comparisons AS
SELECT m.job_id, pa.a, pb.b, m.logits[pa.a * (m.size - 1) + pb.b + (pb.b < pa.a)::integer] AS logit
  FROM comparison_matrices m
 CROSS JOIN LATERAL generate_series(0, m.size - 1) AS pa(a)
 CROSS JOIN LATERAL generate_series(0, m.size - 1) AS pb(b)
 WHERE pa.a <> pb.b;

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
