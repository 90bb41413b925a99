-- sessions_of: one user's live sids.
-- KEYS[1] user index key
-- ARGV    uid (decimal), session prefix, user field, uid field, pointer
--         field, events channel
-- Reply   the live sids; the others (gone, rotated, logged out or holding
--         another uid) are removed from the index (lib.lua live_sids).
return live_sids(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
