-- rotate: replace a session's sid (self-regenerating sessions).
-- KEYS[1] old session key; KEYS[2] new session key; KEYS[3] (optional) the
--         successor to destroy first (a reissue)
-- ARGV    old sid, new sid, ttl seconds, rotation pointer field, expected
--         pointer ('' when the old session was never rotated), user field,
--         user prefix, index TTL floor, successor sid ('' without KEYS[3])
-- Reply   {1, new fields...} rotated (or a retried call that already ran);
--         {0} the old session is gone; {2, pointer} the old session's
--         pointer is no longer the expected one (another request rotated
--         it first): nothing written, decide again on this fresh state.
-- Keeps   compare-and-set on the pointer, so concurrent rotations of one
--         sid converge on ONE new sid; the copy and the pointer are one
--         step, so no write to the old session is lost; the old session is
--         touched (it serves the grace period) and stays in its user index.
local old_key, new_key, reissued_key = KEYS[1], KEYS[2], KEYS[3]
local old_sid, new_sid, ttl, pointer_field, expected, user_field, user_prefix,
      floor, reissued_sid =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]

local function reply_with(status, flat)
  local reply = {status}
  for _, item in ipairs(flat) do reply[#reply + 1] = item end
  return reply
end

if redis.call('EXISTS', new_key) == 1 then
  return reply_with(1, redis.call('HGETALL', new_key))
end
local old = redis.call('HGETALL', old_key)
if #old == 0 then return {0} end
local flat, pointer, user = {}, '', nil
for index = 1, #old, 2 do
  local field, value = old[index], old[index + 1]
  if field == pointer_field then
    pointer = value
  else
    flat[#flat + 1] = field
    flat[#flat + 1] = value
    if field == user_field then user = value end
  end
end
if pointer ~= expected then return {2, pointer} end
if #flat == 0 then return {0} end
if reissued_key then destroy(reissued_key, reissued_sid, user_field, user_prefix) end

in_slices(function(list, first, last)
  redis.call('HSET', new_key, unpack(list, first, last))
end, flat)
redis.call('EXPIRE', new_key, ttl)
local index = index_key(user_prefix, user)
if index then index_add(index, new_sid, ttl, floor) end
redis.call('HSET', old_key, pointer_field, new_sid)
redis.call('EXPIRE', old_key, ttl)
return reply_with(1, flat)
