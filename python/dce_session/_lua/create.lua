-- create: a newborn session's first write when it binds no connection and
-- deletes nothing (else write.lua's 'create' mode): HSET + EXPIRE of its own
-- fresh key and nothing more, with none of write.lua's definitions (Redis
-- runs a script's whole text on every call).
-- KEYS[1] session key (a fresh sid's)
-- ARGV    the field/value pairs to set
-- Reply   write.lua's layout: {LIVE, 0, 1, 0, sid written}
-- Keeps   the key gets its sid's TTL in the same step; values are stored as
--         the strings given, in slices (any number of fields).
local sid = string.sub(KEYS[1], #@sid_name + 2)
for first = 1, #ARGV, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
redis.call('EXPIRE', KEYS[1], sid_ttl(sid))
return {LIVE, 0, 1, 0, sid}
