-- each_session: one session of a user's index, checked and acted on (Redis
-- Cluster: the per-slot step of sessions_of, sync, logout_everywhere and
-- connections_of).
-- KEYS[1] session key
-- ARGV    uid, user field, uid field, pointer field, events channel, sid, action
--         ('check' | 'sync' | 'logout' | 'connections'), then the action's
--         arguments: the user JSON for 'sync'; the bindings, server and
--         client fields for 'connections'
-- Reply   {0} when the session is no longer a live session of that uid
--         (the caller prunes it from the index; the rule of lib.lua
--         live_sids), else {1}, plus the bindings JSON, server and client
--         (each or false) for 'connections'. 'sync' and 'logout' publish their event (one per
--         session on a cluster) in the same step.
local key, uid, user_field, uid_field, pointer_field, channel, sid, action =
  KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local held = redis.call('HMGET', key, user_field, pointer_field)
local stored_uid = held[1] and user_id(held[1], uid_field)
if not held[1] or held[2] or (stored_uid ~= nil and stored_uid ~= uid) then return {0} end
if action == 'sync' then
  redis.call('HSET', key, user_field, ARGV[8])
  publish(channel, {event = 'sync', uid = uid, sids = {sid}})
elseif action == 'logout' then
  redis.call('DEL', key)
  publish(channel, {event = 'logout_everywhere', uid = uid, sids = {sid}})
elseif action == 'connections' then
  local held = redis.call('HMGET', key, ARGV[8], ARGV[9], ARGV[10])
  return {1, held[1], held[2], held[3]}
end
return {1}
