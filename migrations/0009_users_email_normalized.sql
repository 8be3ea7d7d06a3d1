-- Accounts are unique by their normalised address (server/users/email_address.py: NFKC, folded
-- case, the domain in its IDNA ASCII form), which the server now stores as the email itself.
-- The old key, lower(email) under the database's collation, let lookalikes capture an address:
-- glibc lowers the Kelvin sign U+212A to 'k' and a dotted capital I U+0130 to 'i', so a
-- lookalike registered first owned the plain address while its mail went to the lookalike.
--
-- The new key is computed from the stored address in the C collation (ASCII case only), so it
-- no longer depends on the database's collation. On every address the server stores (lower-case
-- ASCII) it is the identity; on an existing address whose NFKC form is ASCII it equals the
-- server's normalisation (tests/users/test_email_address.py). Rebuilding the column drops
-- 0002's prefix index: the key is in the C collation, so its unique index serves the admin
-- listing's prefix filter (LIKE 'abc%') itself. The rebuild rewrites the table under an
-- exclusive lock.
ALTER TABLE users DROP COLUMN email_normalized;
ALTER TABLE users ADD COLUMN email_normalized text COLLATE "C" NOT NULL
    GENERATED ALWAYS AS (lower(normalize(email, NFKC) COLLATE "C")) STORED;

-- Two accounts whose addresses are one address once normalised (a lookalike of the other, or
-- full-width letters, which the old key kept apart): which keeps it is for a person to decide.
DO $$
DECLARE
    clashes text;
BEGIN
    SELECT string_agg(ids, '; ') INTO clashes
    FROM (
        SELECT string_agg(id::text, ', ' ORDER BY id) AS ids
        FROM users
        GROUP BY email_normalized
        HAVING count(*) > 1
    ) AS clashing;
    IF clashes IS NOT NULL THEN
        RAISE EXCEPTION 'users with one address once normalised: %', clashes
            USING HINT = 'Change or delete all but one account of each group (the others were '
                'registered with a lookalike spelling), then migrate again.';
    END IF;
END
$$;

-- An unconfirmed account whose address NFKC turns into another one (a Kelvin sign, full-width
-- letters) was made for a mailbox that never confirmed it: it waits for that mailbox now, as a
-- new registration does. Its owner takes it with a password reset, which confirms the address.
UPDATE users SET status = 'pending', updated_at = now()
WHERE status = 'active' AND email_verified_at IS NULL AND normalize(email, NFKC) <> email;

-- Mail goes to the normalised address. Where the key is a plain ASCII address it is that; the
-- rest (an internationalised domain, a non-ASCII local part) python -m server migrate
-- normalises in Python afterwards, or reports.
UPDATE users SET email = email_normalized, updated_at = now()
WHERE email <> email_normalized COLLATE "C" AND email_normalized ~ '^[!-?A-~]+@[!-?A-~]+$';

ALTER TABLE users ADD CONSTRAINT users_email_normalized_key UNIQUE (email_normalized);
