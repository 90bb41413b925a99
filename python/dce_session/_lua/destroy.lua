-- destroy: delete a session and its entry in its user's index.
-- KEYS[1] session key
-- ARGV    sid, user field, user prefix
-- Reply   1 when the key existed, else 0.
return destroy(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
