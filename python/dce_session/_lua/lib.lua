-- Helpers prepended to every script of dce-session (see _scripts.py).
-- They never decode user values: a uid is read as the decimal text of the
-- top-level "id" member of the stored user JSON, so ids up to 2^64-1 keep
-- every digit (cjson would turn them into floats).

-- The decimal text of the top-level "id" of a JSON object, or nil.
local function user_id(json)
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
      if depth == 1 and string.sub(json, hit + 1, close - 1) == 'id' then
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

-- The user index key of a stored user JSON, or nil when it has no id. An
-- empty user_prefix means "leave the index alone": on a Redis Cluster the
-- index lies in another slot and the caller updates it in a step of its own.
local function index_key(user_prefix, user_json)
  if user_prefix == '' then return nil end
  local uid = user_id(user_json)
  if uid then return user_prefix .. ':' .. uid end
  return nil
end

-- Put sid in its user's index and keep the index alive at least as long as
-- the session (and never shorter than the mapping TTL floor).
local function index_add(index, sid, ttl_seconds, floor_seconds)
  redis.call('SADD', index, sid)
  local want = math.max(tonumber(ttl_seconds), tonumber(floor_seconds))
  if redis.call('TTL', index) < want then redis.call('EXPIRE', index, want) end
end

-- EXPIRE a session; when logged in, keep its index entry and index alive.
-- Returns 1 when the key exists.
local function touch(key, sid, ttl_seconds, user_field, user_prefix, floor_seconds)
  if redis.call('EXPIRE', key, ttl_seconds) == 0 then return 0 end
  local index = index_key(user_prefix, redis.call('HGET', key, user_field) or nil)
  if index then index_add(index, sid, ttl_seconds, floor_seconds) end
  return 1
end

-- Remove a session key and its entry in its user's index. Returns 1 when
-- the key existed.
local function destroy(key, sid, user_field, user_prefix)
  local index = index_key(user_prefix, redis.call('HGET', key, user_field) or nil)
  if index then redis.call('SREM', index, sid) end
  return redis.call('DEL', key)
end

-- Call fn(args, first, last) over a list in slices (Lua's unpack limit).
local function in_slices(fn, list)
  for first = 1, #list, 1000 do
    fn(list, first, math.min(first + 999, #list))
  end
end

-- The live sids of one user's index, pruning the rest: a sid is live when
-- its key exists and still holds that user. Returns the live sids.
local function live_sids(index, uid, session_prefix, user_field)
  local live, dead = {}, {}
  for _, sid in ipairs(redis.call('SMEMBERS', index)) do
    local user = redis.call('HGET', session_prefix .. ':' .. sid, user_field)
    if user and user_id(user) == uid then
      live[#live + 1] = sid
    else
      dead[#dead + 1] = sid
    end
  end
  in_slices(function(list, first, last)
    redis.call('SREM', index, unpack(list, first, last))
  end, dead)
  return live
end
