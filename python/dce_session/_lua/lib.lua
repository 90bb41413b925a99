-- Helpers prepended to every script of dce-session (see _scripts.py).
-- They never decode user values: a uid is read as the decimal text of the
-- top-level uid member of the stored user JSON, so ids up to 2^64-1 keep
-- every digit (cjson would turn them into floats).

-- The decimal text of the top-level member `name` of a JSON object, or nil
-- when it has none (or it is not a non-negative integer).
local function user_id(json, name)
  if not json then return nil end
  local at, depth = 1, 0
  while true do
    local hit = string.find(json, '[{}%[%]"]', at)
    if not hit then return nil end
    local char = string.sub(json, hit, hit)
    if char == '"' then
      local close = hit + 1
      while true do
        local stop = string.find(json, '["\\]', close)
        if not stop then return nil end
        if string.sub(json, stop, stop) == '\\' then
          close = stop + 2
        else
          close = stop
          break
        end
      end
      if depth == 1 and string.sub(json, hit + 1, close - 1) == name then
        local digits = string.match(json, '^%s*:%s*(%d+)%s*[,}]', close + 1)
        if digits then return digits end
      end
      at = close + 1
    else
      if char == '{' or char == '[' then depth = depth + 1 else depth = depth - 1 end
      at = hit + 1
    end
  end
end

-- Call fn(list, first, last) over a list in slices of 1000 (Lua's unpack
-- stops near 8000 values).
local function in_slices(fn, list)
  for first = 1, #list, 1000 do
    fn(list, first, math.min(first + 999, #list))
  end
end

local function hset_all(key, flat)
  in_slices(function(list, first, last)
    redis.call('HSET', key, unpack(list, first, last))
  end, flat)
end

-- The manager's settings, written into the text of its scripts by
-- _scripts.py (scripts_for) rather than sent with every call: the session
-- prefix, the bookkeeping field names, the user index prefix ('' on a
-- cluster: see index_key), the index TTL floor, the events channel and the
-- grace period in seconds.
local SETTINGS = {
  prefix = @sid_name, pointer = @new_sid_field, user = @user_field, uid = @uid_field,
  index = @script_prefix, floor = @mapping_ttl_seconds, events = @events_channel,
  bindings = @bindings_field, server = @server_field, client = @client_field,
  grace = @grace_seconds,
}

-- A sid's ttl in seconds: the 4 hex digits of minutes after its 64 random
-- ones (the sid format; the flows only send sids the core made or checked).
local function sid_ttl(sid)
  return tonumber(string.sub(sid, 65, 68), 16) * 60
end

-- The header every session script's ARGV starts with (built by the flows'
-- SessionState._header): S.key is KEYS[1], the presented session, S.sid and
-- S.ttl are read from it; S.since (ARGV[1]): a successor created at or
-- after this second is within grace.
local HEADER = 1
local function session_header()
  local sid = string.sub(KEYS[1], #SETTINGS.prefix + 2)
  return {
    key = KEYS[1], sid = sid, ttl = sid_ttl(sid), since = tonumber(ARGV[1]),
    prefix = SETTINGS.prefix, pointer = SETTINGS.pointer, user = SETTINGS.user,
    uid = SETTINGS.uid, index = SETTINGS.index, floor = SETTINGS.floor,
    events = SETTINGS.events,
  }
end

-- Publish a session event (a table of strings) on the events channel, in the
-- same step as the change it reports.
local function publish(channel, event)
  redis.call('PUBLISH', channel, cjson.encode(event))
end

-- Connection bindings: `field` (e.g. "$servers") holds a JSON object
-- {binding id: [server, client or null]}, one entry per connection; the dce
-- fields $server/$client keep the latest binding for dce readers.
local function bind(key, field, server_field, client_field, id, server, client)
  local bindings = cjson.decode(redis.call('HGET', key, field) or '{}')
  bindings[id] = {server, client ~= '' and client or cjson.null}
  redis.call('HSET', key, field, cjson.encode(bindings), server_field, server)
  if client ~= '' then redis.call('HSET', key, client_field, client)
  else redis.call('HDEL', key, client_field) end
end

-- The user index key of a stored user JSON, or nil. An empty S.index means
-- "leave the index alone": on a Redis Cluster the index lies in another
-- slot and the caller updates it in a step of its own.
local function index_key(S, user_json)
  if S.index == '' or not user_json then return nil end
  local uid = user_id(user_json, S.uid)
  if uid then return S.index .. ':' .. uid end
  return nil
end

-- Stop the script with a WRONGTYPE error, before it writes anything, when
-- `index` (a user index key, or nil) is another program's key, not a set.
local function check_index(index)
  if not index then return end
  local kind = redis.call('TYPE', index).ok
  if kind ~= 'set' and kind ~= 'none' then
    error({err = 'WRONGTYPE the user index ' .. index .. ' is not a set; nothing was written'})
  end
end

-- Stop the script, before it writes, when a connection bindings field (its
-- raw text, or nil) is not the JSON object bind/unbind read: another program's.
local function check_bindings(raw)
  if not raw then return end
  local ok, bindings = pcall(cjson.decode, raw)
  if not ok or type(bindings) ~= 'table' then
    error({err = 'ERR the connection bindings field is not a JSON object; nothing was written'})
  end
end

-- Put sid in an index and keep the index alive at least as long as the
-- session (never shorter than the mapping TTL floor); only writes the TTL
-- when it would otherwise fall short.
local function index_add(index, sid, ttl_seconds, floor_seconds)
  redis.call('SADD', index, sid)
  local want = math.max(ttl_seconds, floor_seconds)
  if redis.call('TTL', index) < want then redis.call('EXPIRE', index, want) end
end

-- The index upkeep of a touch: one TTL read, and SADD + EXPIRE only when
-- the index would otherwise expire before the session (or is gone). The
-- scripts keep membership themselves; this heals an evicted index.
local function index_touch(index, sid, ttl_seconds, floor_seconds)
  if redis.call('TTL', index) < ttl_seconds then index_add(index, sid, ttl_seconds, floor_seconds) end
end

-- Lifecycle states (SEMANTICS Part 3), as replies report them; ROTATED and
-- FALLBACK are outcomes of a write, reported with the key written to.
local GONE, LIVE, FORWARDING, SUPERSEDED, ENDED, ROTATED, FALLBACK = 0, 1, 2, 3, 4, 5, 6

local function is_sid(text)
  return #text >= 76 and #text <= 84 and not string.find(text, '[^0-9A-Fa-f]')
end

-- What the presented key holds, read with the fewest commands: {pointer,
-- user, exists}. `fields` (a flat HGETALL already read) costs nothing more.
local function probe(S, fields)
  if fields then
    local held = {exists = #fields > 0}
    for index = 1, #fields, 2 do
      if fields[index] == S.pointer then held.pointer = fields[index + 1]
      elseif fields[index] == S.user then held.user = fields[index + 1] end
    end
    return held
  end
  local values = redis.call('HMGET', S.key, S.pointer, S.user)
  if values[1] then return {pointer = values[1], exists = true} end
  if values[2] then return {user = values[2], exists = true} end
  return {exists = redis.call('EXISTS', S.key) == 1}
end

-- The state of the presented key, one hop deep. Returns a table: state;
-- at = {key, sid, ttl, user, remaining} of the session an operation acts on
-- (LIVE: the key itself; FORWARDING: its successor; else nil); for rotated
-- keys: remaining = the presented key's TTL, pointer, successor
-- (SUPERSEDED). A live key's remaining TTL is not read (-1: unused).
local function resolve(S, fields)
  local held = probe(S, fields)
  if not held.exists then return {state = GONE, remaining = -2} end
  if not held.pointer then
    return {state = LIVE, remaining = -1,
            at = {key = S.key, sid = S.sid, ttl = S.ttl, user = held.user, remaining = -1}}
  end
  local pointer = held.pointer
  local found = {state = ENDED, remaining = redis.call('TTL', S.key), pointer = pointer}
  if not is_sid(pointer) then return found end
  local key = S.prefix .. ':' .. pointer
  local successor_remaining = redis.pcall('TTL', key)
  if type(successor_remaining) ~= 'number' or successor_remaining == -2 then return found end
  local successor_held = redis.call('HMGET', key, S.pointer, S.user)
  if successor_held[1] then return found end
  local successor = {key = key, sid = pointer, remaining = successor_remaining,
                     user = successor_held[2] or nil,
                     ttl = tonumber(string.sub(pointer, 65, 68), 16) * 60}
  if tonumber(string.sub(pointer, 69), 16) >= S.since then
    found.state, found.at = FORWARDING, successor
  else
    found.state, found.successor = SUPERSEDED, successor
  end
  return found
end

-- EXPIRE a live session; when logged in, keep its index alive.
local function touch(S, at)
  local index = index_key(S, at.user)  -- the index first: another program's stops it unwritten
  if index then index_touch(index, at.sid, at.ttl, S.floor) end
  redis.call('EXPIRE', at.key, at.ttl)
end

-- Remove a live session and its entry in its user's index; returns the
-- uid of its user (nil when none).
local function destroy(S, at)
  local uid = user_id(at.user, S.uid)
  if uid and S.index ~= '' then redis.call('SREM', S.index .. ':' .. uid, at.sid) end
  redis.call('DEL', at.key)
  return uid
end

-- The side key saying that a login, auto_login or regenerate(destroy_old)
-- ended the presented sid less than a grace period ago (renew.lua sets it,
-- in the session's hash slot; its value is the new sid): a request still
-- carrying that sid comes from a browser that has probably been sent the new
-- one already, and a connection still on it disconnects from the new one.
local function replaced_key(S)
  return S.prefix .. '~replaced:{' .. S.key .. '}'
end

-- 1 when the presented sid, gone, was replaced by a login (replaced_key), else 0.
local function replaced(S)
  return redis.call('EXISTS', replaced_key(S))
end

-- The reply of a load: {state, remaining, sid, fields...} for LIVE,
-- FORWARDING and ROTATED (the session acted on; `flat` when already read);
-- {SUPERSEDED, remaining, successor sid, successor remaining}; {GONE,
-- remaining, replaced (1|0)}; {ENDED, remaining}.
local function found_reply(S, found, state, flat)
  local at = found.at
  if at then
    local reply = {state or found.state, at.remaining, at.sid}
    for _, item in ipairs(flat or redis.call('HGETALL', at.key)) do reply[#reply + 1] = item end
    return reply
  end
  if found.successor then
    return {found.state, found.remaining, found.successor.sid, found.successor.remaining}
  end
  if found.state == GONE then return {GONE, found.remaining, replaced(S)} end
  return {found.state, found.remaining}
end

-- Move a live session's data under a fresh key (RENAME: every field goes,
-- bindings included): the old key keeps only the pointer, with the session
-- TTL from now (never extended later). Returns the data (flat; `flat`: the
-- data already read).
local function move(S, from, new_key, new_sid, new_ttl, old_key, old_ttl, flat)
  local index = index_key(S, from.user)
  flat = flat or redis.call('HGETALL', from.key)
  -- The first write: another program's key at the index (not a set) makes
  -- this SREM stop the script with nothing written.
  if index then redis.call('SREM', index, from.sid) end
  redis.call('RENAME', from.key, new_key)
  redis.call('EXPIRE', new_key, new_ttl)
  if index then index_add(index, new_sid, new_ttl, S.floor) end
  if from.key ~= old_key then redis.call('DEL', old_key) end
  redis.call('HSET', old_key, S.pointer, new_sid)
  redis.call('EXPIRE', old_key, old_ttl)
  return flat
end

-- A short-lived record of a script's result, so that a replay after a lost
-- reply (redis-py Retry) returns the first execution's result. The record
-- key is in the session's slot (hash tag) and lives `REPLAY_SECONDS`.
local REPLAY_SECONDS = 60
local function replayed(record)
  if record == '' then return nil end
  return redis.call('GET', record)
end
local function remember(record, result)
  if record ~= '' then redis.call('SET', record, result, 'EX', REPLAY_SECONDS) end
end

-- The binding block of a script's ARGV at `at`: binding id ('' for none),
-- server, client ('' for none); the field names are the manager's.
local function binding_args(at)
  return {field = SETTINGS.bindings, server_field = SETTINGS.server,
          client_field = SETTINGS.client, id = ARGV[at], server = ARGV[at + 1],
          client = ARGV[at + 2]}
end

local function bind_at(key, B)
  if B.id ~= '' then bind(key, B.field, B.server_field, B.client_field, B.id, B.server, B.client) end
end

-- Remove binding `id`; the dce fields then show another binding, or go.
-- Returns 1 when it was there.
local function unbind(key, field, server_field, client_field, id)
  local raw = redis.call('HGET', key, field)
  if not raw then return 0 end
  local bindings = cjson.decode(raw)
  if bindings[id] == nil then return 0 end
  bindings[id] = nil
  local other = nil
  for _, held in pairs(bindings) do other = held end
  if other == nil then
    redis.call('HDEL', key, field, server_field, client_field)
    return 1
  end
  redis.call('HSET', key, field, cjson.encode(bindings), server_field, other[1])
  if other[2] ~= cjson.null then redis.call('HSET', key, client_field, other[2])
  else redis.call('HDEL', key, client_field) end
  return 1
end

-- The live sids of one user's index, pruning the rest (SEMANTICS 3.7): a
-- member stays while its key exists, is not rotated, holds a user, and
-- that user's uid is this one or cannot be read (another writer's user
-- type). Returns the live sids; `prune`: SREM the others from the index.
local function live_sids(index, uid, prune)
  local prefix, user_field, uid_field, pointer_field =
    SETTINGS.prefix, SETTINGS.user, SETTINGS.uid, SETTINGS.pointer
  local live, dead, live_count, dead_count = {}, {}, 0, 0
  -- A user JSON that opens with the uid member (what our writers and serde
  -- write for a user whose first member is the uid) needs no parse: the
  -- member is this uid when a ',' or '}' follows it.
  local opening = '{"' .. uid_field .. '":' .. uid
  local after = #opening + 1
  for _, sid in ipairs(redis.call('SMEMBERS', index)) do
    local held = redis.call('HMGET', prefix .. ':' .. sid, user_field, pointer_field)
    local user, mine = held[1], false
    if user and not held[2] then
      local next_byte = string.find(user, opening, 1, true) == 1 and string.byte(user, after)
      if next_byte == 44 or next_byte == 125 then
        mine = true
      else
        local stored_uid = user_id(user, uid_field)
        mine = stored_uid == nil or stored_uid == uid
      end
    end
    if mine then
      live_count = live_count + 1
      live[live_count] = sid
    else
      dead_count = dead_count + 1
      dead[dead_count] = sid
    end
  end
  if prune then
    in_slices(function(list, first, last)
      redis.call('SREM', index, unpack(list, first, last))
    end, dead)
  end
  return live
end
