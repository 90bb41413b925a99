-- touch: refresh a session's TTL.
-- KEYS[1] session key
-- ARGV    sid, ttl seconds, user field, user prefix, index TTL floor
-- Reply   1 when the key exists, else 0 (nothing is created).
-- Keeps   a logged-in session's index entry and index TTL follow the touch.
return touch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
