-- connections_of: where one user's long connections are held.
-- KEYS[1] user index key
-- ARGV    uid (decimal), session prefix, user field, uid field, pointer
--         field, server field, client field
-- Reply   flat [sid, server, client-or-false, ...] for the user's live
--         sessions that are bound to a server; the index is pruned as by
--         sessions_of.
local reply = {}
for _, sid in ipairs(live_sids(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])) do
  local bound = redis.call('HMGET', ARGV[2] .. ':' .. sid, ARGV[6], ARGV[7])
  if bound[1] then
    reply[#reply + 1] = sid
    reply[#reply + 1] = bound[1]
    reply[#reply + 1] = bound[2]
  end
end
return reply
