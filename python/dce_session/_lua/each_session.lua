-- each_session: one session of a user's index, checked and acted on (Redis
-- Cluster: the per-slot step of sessions_of, sync, logout_everywhere and
-- connections_of).
-- KEYS[1] session key
-- ARGV    uid, user field, uid field, pointer field, action ('check' |
--         'sync' | 'logout' | 'connections'), then the action's arguments:
--         the user JSON for 'sync'; the server and client fields for
--         'connections'
-- Reply   {0} when the session is no longer a live session of that uid
--         (the caller prunes it from the index; the rule of lib.lua
--         live_sids), else {1}, plus the server and client values for
--         'connections'.
local key, uid, user_field, uid_field, pointer_field, action =
  KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local held = redis.call('HMGET', key, user_field, pointer_field)
local stored_uid = held[1] and user_id(held[1], uid_field)
if not held[1] or held[2] or (stored_uid ~= nil and stored_uid ~= uid) then return {0} end
if action == 'sync' then
  redis.call('HSET', key, user_field, ARGV[6])
elseif action == 'logout' then
  redis.call('DEL', key)
elseif action == 'connections' then
  local bound = redis.call('HMGET', key, ARGV[6], ARGV[7])
  return {1, bound[1], bound[2]}
end
return {1}
