-- write: set and delete fields of one session.
-- KEYS[1] session key; KEYS[2] fallback key (only with mode 'fallback')
-- ARGV    mode, sid, ttl seconds, fallback sid, fallback ttl seconds,
--         touch (1|0), reply fields (1|0), user field, user prefix,
--         index TTL floor, n, then n field/value pairs to set, then the
--         fields to delete
--   mode  'existing': the key must exist, else nothing is written (the
--                     session was destroyed: no resurrection);
--         'create':   a newborn session: create the key if missing;
--         'fallback': a presented sid not yet checked: write it when it
--                     exists, else create the fallback key instead (no
--                     adoption of unknown sids).
-- Reply   {status, deleted, exists, ttl before}, then the fields (flat)
--         when asked (ttl before: the written key's remaining TTL before
--         this write touched it, -2 when it did not exist):
--         status 0 = nothing written (destroyed), 1 = KEYS[1], 2 = KEYS[2];
--         deleted = how many fields were removed; exists = 1 when the key
--         written to exists afterwards.
-- Keeps   a key this creates gets its TTL in the same step; values are
--         stored as the strings given.
local mode, sid, ttl, fallback_sid, fallback_ttl, wants_touch, wants_fields,
      user_field, user_prefix, floor, pairs_count =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7],
  ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
local key, status = KEYS[1], 1
local existed = redis.call('EXISTS', key) == 1
if not existed then
  if mode == 'existing' then return {0, 0, 0, -2} end
  if mode == 'fallback' then
    key, sid, ttl, status = KEYS[2], fallback_sid, fallback_ttl, 2
    existed = redis.call('EXISTS', key) == 1
  end
end
local before = redis.call('TTL', key)
local set_end = 11 + 2 * pairs_count
if pairs_count > 0 then
  redis.call('HSET', key, unpack(ARGV, 12, set_end))
end
local deleted = 0
if #ARGV > set_end then
  deleted = redis.call('HDEL', key, unpack(ARGV, set_end + 1, #ARGV))
end
local exists = redis.call('EXISTS', key)
if exists == 1 then
  if wants_touch == '1' then
    touch(key, sid, ttl, user_field, user_prefix, floor)
  elseif not existed then
    redis.call('EXPIRE', key, ttl)
  end
end
local reply = {status, deleted, exists, before}
if wants_fields == '1' then
  for _, item in ipairs(redis.call('HGETALL', key)) do reply[#reply + 1] = item end
end
return reply
