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
-- (no pointer) that is anonymous, or whose user JSON opens with its uid as
-- our writers write it, is read and touched here as the general path below
-- would: the user index first (another program's key there stops the
-- script before the EXPIRE), only when it would expire before the session.
-- ARGV[2] is the touch flag (HEADER + 1).
local fields = redis.call('HGETALL', KEYS[1])
local plain, user = #fields > 0, nil
for index = 1, #fields, 2 do
  local name = fields[index]
  if name == @new_sid_field then
    plain = false
    break
  elseif name == @user_field then
    user = fields[index + 1]
  end
end
local index_of_user = nil
if plain and user and @script_prefix ~= '' then
  local opening = '{"' .. @uid_field .. '":'
  local uid = string.find(user, opening, 1, true) == 1
    and string.match(user, '^(%d+)%s*[,}]', #opening + 1)
  if uid then index_of_user = @script_prefix .. ':' .. uid else plain = false end
end
if plain then
  local sid = string.sub(KEYS[1], #@sid_name + 2)
  if ARGV[2] == '1' then
    local ttl = tonumber(string.sub(sid, 65, 68), 16) * 60
    if index_of_user and redis.call('TTL', index_of_user) < ttl then
      redis.call('SADD', index_of_user, sid)
      local want = math.max(ttl, @mapping_ttl_seconds)
      if redis.call('TTL', index_of_user) < want then
        redis.call('EXPIRE', index_of_user, want)
      end
    end
    redis.call('EXPIRE', KEYS[1], ttl)
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
