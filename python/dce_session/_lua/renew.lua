-- renew: copy a session under a fresh sid (regenerate, login, auto_login).
-- KEYS[1] presented session key; KEYS[2] new session key
-- ARGV    the session header (lib.lua), then: new sid (its ttl is the new
--         session's), must exist (1|0), destroy old (1|0), needs a user (1|0), the
--         binding block (lib.lua binding_args), n, then n field/value pairs
--         to set, then the fields to remove
-- Reply   {status, state, uid of the old session's user or '', sid of the
--         old session acted on or ''}, then the
--         new session's fields (flat) when written. state: what the
--         presented key was (lib.lua states); status:
--         0 = the session was required but is not LIVE/FORWARDING (nothing
--             written), 1 = written, 2 = nothing left to write (nothing
--             written), 3 = no user while one is needed (nothing written).
-- Keeps   atomic: every write that reached the session before this ran is
--         copied (from the successor when FORWARDING), and once the old
--         session is destroyed no later write can recreate it. Destroying
--         the old (login) ends the presented key outright, never leaving a
--         forwarding pointer (SEMANTICS 3.4); only a side key records, for the
--         grace period, that it was replaced (what open.lua reports). The new key gets its TTL and
--         its user index entry in the same step. A replay finds the new key
--         and replies as the first execution did. Connection bindings move
--         with a login (a 'rotate' event goes out); a regenerate that keeps
--         the old sid leaves them there, except binding.id (the connection
--         regenerating), which moves to the new sid.
local S = session_header()
local new_key = KEYS[2]
local new_sid, must_exist, destroy_old, needs_user =
  ARGV[HEADER + 1], ARGV[HEADER + 2], ARGV[HEADER + 3], ARGV[HEADER + 4]
local ttl = sid_ttl(new_sid)
local binding = binding_args(HEADER + 5)
local pairs_count = tonumber(ARGV[HEADER + 8])
local first = HEADER + 9

local function with_fields(reply, key)
  for _, item in ipairs(redis.call('HGETALL', key)) do reply[#reply + 1] = item end
  return reply
end

if redis.call('EXISTS', new_key) == 1 then return with_fields({1, LIVE, '', ''}, new_key) end

local presented = redis.call('HGETALL', S.key)
local found = resolve(S, presented)
local at = found.at
if not at and must_exist == '1' then return {0, found.state, '', ''} end
local data, order = {}, {}
if at then
  local old = at.key == S.key and presented or redis.call('HGETALL', at.key)
  for index = 1, #old, 2 do
    data[old[index]] = old[index + 1]
    order[#order + 1] = old[index]
  end
end
local old_uid, old_sid = user_id(data[S.user], S.uid) or '', at and at.sid or ''
if needs_user == '1' and not data[S.user] then return {3, found.state, old_uid, old_sid} end

local set_end = first - 1 + 2 * pairs_count
for index = first, set_end, 2 do
  if data[ARGV[index]] == nil then order[#order + 1] = ARGV[index] end
  data[ARGV[index]] = ARGV[index + 1]
end
for index = set_end + 1, #ARGV do data[ARGV[index]] = nil end
if binding.id ~= '' then check_bindings(data[binding.field]) end  -- before the first write
if destroy_old ~= '1' then  -- the old sid keeps its connections; only binding.id moves
  data[binding.field], data[binding.server_field], data[binding.client_field] = nil, nil, nil
end

local new_user = data[S.user]
local index = index_key(S, new_user)
if destroy_old == '1' and at then  -- before the first write
  local old_index = index_key(S, at.user)
  if old_index ~= index then check_index(old_index) end
end
local flat = {}
for _, field in ipairs(order) do
  if data[field] ~= nil then
    flat[#flat + 1] = field
    flat[#flat + 1] = data[field]
    data[field] = nil
  end
end
-- The first write: another program's key at the new index (not a set) makes
-- this SADD stop the script with nothing written. (A new user implies fields
-- to write, so the status 2 below never follows it.)
if index then index_add(index, new_sid, ttl, S.floor) end
if destroy_old == '1' and at then
  destroy(S, at)
  if found.state == FORWARDING then redis.call('DEL', S.key) end
  redis.call('SET', replaced_key(S), new_sid, 'EX', SETTINGS.grace)
end
if #flat == 0 and binding.id == '' then return {2, found.state, old_uid, old_sid} end

hset_all(new_key, flat)
redis.call('EXPIRE', new_key, ttl)
if destroy_old == '1' and at then
  publish(S.events, {event = 'rotate', sid = at.sid, new_sid = new_sid,
                     uid = user_id(new_user, S.uid)})
end
if binding.id ~= '' then
  bind_at(new_key, binding)
  if at and destroy_old ~= '1' then
    unbind(at.key, binding.field, binding.server_field, binding.client_field, binding.id)
  end
  return with_fields({1, found.state, old_uid, old_sid}, new_key)
end
local reply = {1, found.state, old_uid, old_sid}
for _, item in ipairs(flat) do reply[#reply + 1] = item end
return reply
