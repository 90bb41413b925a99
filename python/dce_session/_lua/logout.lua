-- logout: forget a session's user.
-- KEYS[1] session key
-- ARGV    sid, user field, user prefix
-- Reply   1 when a user was logged in, 0 when not, -1 when the key does not
--         exist.
-- Keeps   the index entry and the user field go in one step.
local key, sid, user_field, user_prefix = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', key) == 0 then return -1 end
local user = redis.call('HGET', key, user_field)
if not user then return 0 end
local index = index_key(user_prefix, user)
if index then redis.call('SREM', index, sid) end
redis.call('HDEL', key, user_field)
return 1
