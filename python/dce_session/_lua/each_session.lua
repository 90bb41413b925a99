-- each_session: one session of a user's index, checked and acted on (Redis
-- Cluster: the per-slot step of sessions_of, sync, logout_everywhere and
-- connections_of).
-- KEYS[1] session key
-- ARGV    uid, user field, action ('check' | 'sync' | 'logout' |
--         'connections'), then the action's arguments: the user JSON for
--         'sync'; the server and client fields for 'connections'
-- Reply   {0} when the session is gone or no longer holds that user (the
--         caller prunes it from the index), else {1}, plus the server and
--         client values for 'connections'.
local key, uid, user_field, action = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local user = redis.call('HGET', key, user_field)
if not user or user_id(user) ~= uid then return {0} end
if action == 'sync' then
  redis.call('HSET', key, user_field, ARGV[4])
elseif action == 'logout' then
  redis.call('DEL', key)
elseif action == 'connections' then
  local bound = redis.call('HMGET', key, ARGV[4], ARGV[5])
  return {1, bound[1], bound[2]}
end
return {1}
