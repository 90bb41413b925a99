-- connections_of: where one user's long connections are held.
-- KEYS[1] user index key
-- ARGV    uid (decimal), session prefix, user field, uid field, pointer
--         field, events channel, bindings field
-- Reply   flat [sid, bindings JSON, ...] for the user's live sessions that
--         hold connection bindings (lib.lua bind); the index is pruned as
--         by sessions_of.
local reply = {}
for _, sid in ipairs(live_sids(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])) do
  local bindings = redis.call('HGET', ARGV[2] .. ':' .. sid, ARGV[7])
  if bindings then
    reply[#reply + 1] = sid
    reply[#reply + 1] = bindings
  end
end
return reply
