-- touch: refresh a session's TTL.
-- KEYS[1] session key
-- ARGV    sid, ttl seconds, user field, user prefix, index TTL floor
-- Reply   the key's remaining TTL in seconds as it was before this touch
--         (so the caller learns how long the session was idle); -2 when the
--         key does not exist (nothing is created).
-- Keeps   a logged-in session's index entry and index TTL follow the touch.
local before = redis.call('TTL', KEYS[1])
if touch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]) == 0 then return -2 end
return before
