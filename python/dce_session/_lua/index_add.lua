-- index_add: put a sid in its user's index (Redis Cluster: the step after or
-- before the session's own script, which cannot reach the index's slot).
-- KEYS[1] user index key
-- ARGV    sid, session ttl seconds, index TTL floor
-- Reply   1
index_add(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return 1
