-- renew: copy a session under a fresh sid (regenerate, login, auto_login).
-- KEYS[1] old session key; KEYS[2] new session key
-- ARGV    old sid, new sid, new ttl seconds, old must exist (1|0),
--         destroy old (1|0), needs a user (1|0), user field, user prefix,
--         index TTL floor, rotation pointer field, n, then n field/value
--         pairs to set, then the fields to remove
-- Reply   {status, old existed (1|0)}, then the new session's fields (flat)
--         when written:
--         0 = the old session was required but is gone (nothing written),
--         1 = written, 2 = nothing left to write (nothing written),
--         3 = no user in the old session while one is needed (nothing
--             written).
-- Keeps   atomic: every write that reached the old session before this ran
--         is copied, and once the old session is destroyed no later write
--         can recreate it (writes require an existing key). The new key
--         gets its TTL and, when the data holds a user, joins that user's
--         index in the same step; the old sid leaves its user's index when
--         it is destroyed. A retried call whose first execution already ran
--         finds the new key and replies as that execution did.
local old_key, new_key = KEYS[1], KEYS[2]
local old_sid, new_sid, ttl, must_exist, destroy_old, needs_user,
      user_field, user_prefix, floor, pointer_field, pairs_count =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8],
  ARGV[9], ARGV[10], tonumber(ARGV[11])

local function reply_with_fields(reply, key)
  for _, item in ipairs(redis.call('HGETALL', key)) do reply[#reply + 1] = item end
  return reply
end

if redis.call('EXISTS', new_key) == 1 then return reply_with_fields({1, 1}, new_key) end

local old = redis.call('HGETALL', old_key)
local old_existed = #old > 0 and 1 or 0
if old_existed == 0 and must_exist == '1' then return {0, 0} end
local data = {}
for index = 1, #old, 2 do data[old[index]] = old[index + 1] end
data[pointer_field] = nil
if needs_user == '1' and not data[user_field] then return {3, old_existed} end

local set_end = 11 + 2 * pairs_count
for index = 12, set_end, 2 do data[ARGV[index]] = ARGV[index + 1] end
for index = set_end + 1, #ARGV do data[ARGV[index]] = nil end

local flat = {}
for field, value in pairs(data) do
  flat[#flat + 1] = field
  flat[#flat + 1] = value
end
if destroy_old == '1' and #old > 0 then destroy(old_key, old_sid, user_field, user_prefix) end
if #flat == 0 then return {2, old_existed} end

in_slices(function(list, first, last)
  redis.call('HSET', new_key, unpack(list, first, last))
end, flat)
redis.call('EXPIRE', new_key, ttl)
local index = index_key(user_prefix, data[user_field])
if index then index_add(index, new_sid, ttl, floor) end
local reply = {1, old_existed}
for _, item in ipairs(flat) do reply[#reply + 1] = item end
return reply
