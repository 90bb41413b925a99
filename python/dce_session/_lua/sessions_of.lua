-- sessions_of: one user's live sids.
-- KEYS[1] user index key
-- ARGV    uid (decimal), session prefix, user field
-- Reply   the live sids; the others (expired, destroyed, logged out or
--         holding another user) are removed from the index.
return live_sids(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
