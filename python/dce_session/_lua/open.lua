-- open: the first store operation of a session a client presented.
-- KEYS[1] session key
-- ARGV    sid, ttl seconds, touch (1|0), user field, user prefix, index TTL floor
-- Reply   {} when the key does not exist; else {remaining TTL seconds as it
--         was before any touch, field, value, field, value, ...}.
-- Keeps   a touch refreshes the key TTL and, when logged in, the user index
--         entry and its TTL in the same step.
local key = KEYS[1]
local sid, ttl, wants_touch, user_field, user_prefix, floor =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local fields = redis.call('HGETALL', key)
if #fields == 0 then return fields end
local reply = {redis.call('TTL', key)}
if wants_touch == '1' then touch(key, sid, ttl, user_field, user_prefix, floor) end
for _, item in ipairs(fields) do reply[#reply + 1] = item end
return reply
