-- connections_of: where one user's long connections are held.
-- KEYS[1] user index key
-- ARGV    uid (decimal)
-- Reply   flat [sid, bindings JSON or false, server, client, ...] for the
--         user's live sessions that hold connection bindings (lib.lua bind)
--         or only the dce fields (bound by another dce service); the index
--         is pruned as by sessions_of.
local reply = {}
for _, sid in ipairs(live_sids(KEYS[1], ARGV[1], true)) do
  local held = redis.call('HMGET', SETTINGS.prefix .. ':' .. sid, SETTINGS.bindings,
                               SETTINGS.server, SETTINGS.client)
  if held[1] or held[2] then
    reply[#reply + 1] = sid
    reply[#reply + 1] = held[1]
    reply[#reply + 1] = held[2]
    reply[#reply + 1] = held[3]
  end
end
return reply
