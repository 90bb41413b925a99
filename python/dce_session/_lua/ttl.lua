-- ttl: how long a session has left, without touching it (ttl_passed).
-- KEYS[1] session key
-- ARGV    the session header (lib.lua)
-- Reply   {state, remaining TTL, sid acted on}: LIVE reports the key itself,
--         FORWARDING its successor (and the caller follows it); any other
--         state (gone, superseded, ended: not a stored session for a
--         client) {state, -2, ''}.
local S = session_header()
local found = resolve(S)
local at = found.at
if not at then return {found.state, -2, ''} end
if at.remaining == -1 then at.remaining = redis.call('TTL', at.key) end
return {found.state, at.remaining, at.sid}
