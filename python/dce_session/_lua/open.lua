-- open: the first store operation of a session a client presented (a load).
-- KEYS[1] session key
-- ARGV    the session header (lib.lua), then touch (1|0)
-- Reply   found_reply (lib.lua): LIVE or FORWARDING with the sid acted on
--         and its fields; SUPERSEDED with both remaining TTLs; GONE or
--         ENDED.
-- Keeps   a touch refreshes a live key (and its user index when it would
--         expire first) in the same step. A forwarded load reads the
--         successor without touching it, and nothing extends a rotated
--         key's TTL (SEMANTICS 3.1, 3.2). A live load costs HGETALL, and
--         EXPIRE with a touch (+ one TTL of the index when logged in).
-- The common case first, before lib.lua's definitions run: a live session
-- with neither a user nor a pointer is read (and touched) here, as the
-- general path below would. ARGV[2] is the touch flag (HEADER + 1).
local fields = redis.call('HGETALL', KEYS[1])
local plain = #fields > 0
for index = 1, #fields, 2 do
  local name = fields[index]
  if name == @new_sid_field or name == @user_field then
    plain = false
    break
  end
end
if plain then
  local sid = string.sub(KEYS[1], #@sid_name + 2)
  if ARGV[2] == '1' then
    redis.call('EXPIRE', KEYS[1], tonumber(string.sub(sid, 65, 68), 16) * 60)
  end
  table.insert(fields, 1, sid)
  table.insert(fields, 1, -1)  -- the remaining TTL, unused for a live key
  table.insert(fields, 1, 1)  -- LIVE
  return fields
end
--@lib
local S = session_header()
local found = resolve(S, fields)
if found.state ~= LIVE then return found_reply(S, found) end
if ARGV[HEADER + 1] == '1' then touch(S, found.at) end
return found_reply(S, found, LIVE, fields)
