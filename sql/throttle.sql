-- name: create_throttle_key :exec
-- Makes sure the row exists, so the lock below queues even the very first attempts on a key.
INSERT INTO login_throttle (key) VALUES ($1) ON CONFLICT (key) DO NOTHING;

-- name: get_throttle_block_for_update :val
-- The block in force before this attempt; the row lock queues concurrent attempts on a key.
-- (The filter is in the select list: a WHERE on it would leave unblocked rows unlocked.)
SELECT CASE WHEN blocked_until > now() THEN blocked_until END
FROM login_throttle WHERE key = $1 FOR UPDATE;

-- name: update_throttle_attempt :exec
-- Counts a login attempt as a failure *before* the password is checked, so a burst of
-- concurrent guesses cannot all slip past the check; a success takes it back. The block
-- doubles with each failure past the free ones, up to a cap.
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
    updated_at = now();

-- name: update_throttle_success :execrows
-- A successful login takes back the failure its attempt counted (for the address counter).
UPDATE login_throttle SET failures = greatest(failures - 1, 0) WHERE key = $1;

-- name: delete_throttle :execrows
DELETE FROM login_throttle WHERE key = $1;

-- name: delete_stale_throttles :execrows
-- Counters nobody touched for longer than they are remembered.
DELETE FROM login_throttle
WHERE updated_at < now() - make_interval(secs => $1)
  AND (blocked_until IS NULL OR blocked_until < now());
