-- write: set and delete fields of one session.
-- KEYS[1] session key; KEYS[2] fallback key (only with mode 'fallback')
-- ARGV    the session header (lib.lua), then: mode, fallback sid (its ttl
--         is the fallback's), touch (1|0), reply fields (1|0), replay record key
--         ('' for none), the binding block (lib.lua binding_args: a
--         connection's first request binds it), n, then n field/value pairs
--         to set, then the fields to delete
--   mode  'existing': the session this object found or created: written
--                     when LIVE, or in its successor when FORWARDING; else
--                     nothing is written (no resurrection);
--         'create':   a newborn session: create the key if missing;
--         'fallback': a presented sid not yet checked: written as
--                     'existing' when it is LIVE or FORWARDING, else the
--                     fallback key is created instead (no adoption).
-- Reply   {state, deleted, exists after, replaced (1|0: FALLBACK from a
--         presented sid a login replaced, lib.lua replaced_key), sid written},
--         then the fields (flat) when asked or forwarded. state: LIVE (written to
--         KEYS[1]), FORWARDING (to the successor), FALLBACK (to KEYS[2]),
--         or, nothing written, GONE / SUPERSEDED / ENDED.
-- Keeps   a key this creates gets its TTL in the same step; a newborn's
--         write is HSET + EXPIRE, nothing more; values are
--         stored as the strings given, in slices (any number of fields); a
--         forwarded write does not touch the successor; a replay returns
--         the first execution's deleted count. The replay record (a key
--         not in KEYS) is read before the first write: on a slot being
--         migrated a missing one fails the script before it changed anything.
-- The common case first, before lib.lua's definitions run: a write that
-- binds nothing and deletes nothing to a live session with neither a user
-- nor a pointer, done here as the general path below would do it. ARGV:
-- [2] mode, [4] touch, [5] reply fields, [7] binding id, [10] n (HEADER 1).
local fast_pairs = tonumber(ARGV[10])
if ARGV[2] ~= 'create' and ARGV[7] == '' and #ARGV == 10 + 2 * fast_pairs then
  local held = redis.call('HMGET', KEYS[1], @new_sid_field, @user_field)
  if not held[1] and not held[2] and redis.call('EXISTS', KEYS[1]) == 1 then
    for first = 11, #ARGV, 1000 do
      redis.call('HSET', KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
    end
    local sid = string.sub(KEYS[1], #@sid_name + 2)
    if ARGV[4] == '1' then
      redis.call('EXPIRE', KEYS[1], tonumber(string.sub(sid, 65, 68), 16) * 60)
    end
    local reply = {1, 0, 1, 0, sid}  -- LIVE, nothing deleted, exists, not replaced
    if ARGV[5] == '1' then
      for _, item in ipairs(redis.call('HGETALL', KEYS[1])) do reply[#reply + 1] = item end
    end
    return reply
  end
end
--@lib
local S = session_header()
local mode, fallback_sid, wants_touch, wants_fields, record =
  ARGV[HEADER + 1], ARGV[HEADER + 2], ARGV[HEADER + 3], ARGV[HEADER + 4], ARGV[HEADER + 5]
local binding = binding_args(HEADER + 6)
local pairs_count = tonumber(ARGV[HEADER + 9])
local first = HEADER + 10
local set_end = first - 1 + 2 * pairs_count
local earlier = nil
if #ARGV > set_end then earlier = replayed(record) end  -- deletions: their count is recorded
local at, state
if mode == 'create' then  -- a newborn's own fresh key: nothing to resolve
  at, state = {key = S.key, sid = S.sid, ttl = S.ttl, fresh = true}, LIVE
else
  local found = resolve(S)
  at, state = found.at, found.state
  if not at then
    if mode == 'existing' then return {state, 0, 0, -2, ''} end
    at, state = {key = KEYS[2], sid = fallback_sid, ttl = sid_ttl(fallback_sid), fresh = true},
      FALLBACK
    at.replaced = replaced(S)
  end
end
local sets, deletions = {}, {}
for index = first, set_end do sets[#sets + 1] = ARGV[index] end
for index = set_end + 1, #ARGV do deletions[#deletions + 1] = ARGV[index] end
-- A logged-in session is touched first (no write here removes its user, so it
-- stays): another program's user index stops the script before any write.
local touched_first = wants_touch == '1' and state ~= FORWARDING and at.user ~= nil
if touched_first then touch(S, at) end
bind_at(at.key, binding)  -- before the values: another writer's bindings field stops it
hset_all(at.key, sets)
local deleted, exists = 0, 1
if #deletions > 0 then
  in_slices(function(list, from, to)
    deleted = deleted + redis.call('HDEL', at.key, unpack(list, from, to))
  end, deletions)
  if earlier then deleted = tonumber(earlier) elseif deleted > 0 then remember(record, deleted) end
  exists = redis.call('EXISTS', at.key)
end
if exists == 1 and state ~= FORWARDING and not touched_first then
  if wants_touch == '1' then
    touch(S, at)
  elseif at.fresh then
    redis.call('EXPIRE', at.key, at.ttl)
  end
end
local reply = {state, deleted, exists, at.replaced or 0, at.sid}
if wants_fields == '1' or state == FORWARDING then
  for _, item in ipairs(redis.call('HGETALL', at.key)) do reply[#reply + 1] = item end
end
return reply
