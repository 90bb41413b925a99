-- touch: refresh a session's TTL.
-- KEYS[1] session key
-- ARGV    the session header (lib.lua)
-- Reply   {state, -1, sid acted on}: LIVE is touched (and its user index
--         when it would expire first); FORWARDING reports its successor, not
--         touched (its idle time tells the rotation judgment whether the
--         client adopted it); any other state: nothing.
local S = session_header()
local found = resolve(S)
if found.state == LIVE then touch(S, found.at) end
if found.at then return {found.state, -1, found.at.sid} end
return {found.state, found.remaining, ''}
