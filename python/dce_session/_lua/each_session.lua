-- each_session: one session of a user's index, checked and acted on (Redis
-- Cluster: the per-slot step of sessions_of, sync, logout_everywhere and
-- connections_of).
-- KEYS[1] session key
-- ARGV    uid, sid, action ('check' | 'sync' | 'logout' | 'connections'),
--         then for 'sync' the user JSON
-- Reply   {0} when the session is no longer a live session of that uid
--         (the caller prunes it from the index; the rule of lib.lua
--         live_sids), else {1}, plus the bindings JSON, server and client
--         (each or false) for 'connections'. 'sync' and 'logout' publish their event (one per
--         session on a cluster) in the same step.
local key, uid, sid, action = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local channel = SETTINGS.events
local held = redis.call('HMGET', key, SETTINGS.user, SETTINGS.pointer)
local stored_uid = held[1] and user_id(held[1], SETTINGS.uid)
if not held[1] or held[2] or (stored_uid ~= nil and stored_uid ~= uid) then return {0} end
if action == 'sync' then
  redis.call('HSET', key, SETTINGS.user, ARGV[4])
  publish(channel, {event = 'sync', uid = uid, sids = {sid}})
elseif action == 'logout' then
  redis.call('DEL', key)
  publish(channel, {event = 'logout_everywhere', uid = uid, sids = {sid}})
elseif action == 'connections' then
  local held = redis.call('HMGET', key, SETTINGS.bindings, SETTINGS.server, SETTINGS.client)
  return {1, held[1], held[2], held[3]}
end
return {1}
