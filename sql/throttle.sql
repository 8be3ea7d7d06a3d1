-- name: get_throttle :one
SELECT failures, blocked_until FROM login_throttle WHERE key = $1;

-- name: update_throttle_failure :one
-- One more failure; the block doubles with each failure past the free ones, up to a cap.
-- $2: free failures, $3: base seconds, $4: cap seconds, $5: forget failures older than this.
INSERT INTO login_throttle AS t (key, failures, blocked_until, updated_at)
VALUES ($1, 1, NULL, now())
ON CONFLICT (key) DO UPDATE SET
    failures = CASE WHEN t.updated_at < now() - make_interval(secs => $5) THEN 1
                    ELSE t.failures + 1 END,
    blocked_until = CASE
        WHEN (CASE WHEN t.updated_at < now() - make_interval(secs => $5) THEN 1
                   ELSE t.failures + 1 END) <= $2 THEN NULL
        -- The exponent is bounded: past ~1,000 failures power() overflows float8 and the
        -- failure (and every later one) would error instead of being counted.
        ELSE now() + make_interval(secs => least($4::float8, $3::float8 * power(2, least(60,
            (CASE WHEN t.updated_at < now() - make_interval(secs => $5) THEN 1
                  ELSE t.failures + 1 END) - $2 - 1))))
        END,
    updated_at = now()
RETURNING failures, blocked_until;

-- name: delete_throttle :execrows
DELETE FROM login_throttle WHERE key = $1;
