-- index_add: put a sid in its user's index (Redis Cluster: the step after the
-- session's own script, which cannot reach the index's slot).
-- KEYS[1] user index key
-- ARGV    sid, session ttl seconds, the sid it replaces
--         ('' for none: a rotation moves the entry in this one step)
-- Reply   1
if ARGV[3] ~= '' then redis.call('SREM', KEYS[1], ARGV[3]) end
index_add(KEYS[1], ARGV[1], tonumber(ARGV[2]), SETTINGS.floor)
return 1
