-- sessions_of: one user's live sids.
-- KEYS[1] user index key
-- ARGV    uid (decimal)
-- Reply   the live sids; the others (gone, rotated, logged out or holding
--         another uid) are removed from the index (lib.lua live_sids).
return live_sids(KEYS[1], ARGV[1], true)
