-- touch: refresh a session's TTL.
-- KEYS[1] session key
-- ARGV    the session header (lib.lua)
-- Reply   {state, remaining TTL before this touch, sid acted on}: LIVE is
--         touched (with its user index entry); FORWARDING reports its
--         successor, not touched (its idle time tells the rotation judgment
--         whether the client adopted it); any other state: nothing.
local S = session_header()
local found = resolve(S)
if found.state == LIVE then touch(S, found.at, redis.call('HGET', S.key, S.user) or nil) end
if found.at then return {found.state, found.at.remaining, found.at.sid} end
return {found.state, found.remaining, ''}
