-- destroy: delete a session and its entry in its user's index.
-- KEYS[1] session key
-- ARGV    the session header (lib.lua), then the replay record key
-- Reply   {state, destroyed (1|0), uid of the destroyed session's user or '',
--         sid destroyed or '', 0, replaced (1|0: GONE, and a login replaced the
--         sid less than a grace period ago, lib.lua replaced_key)}
--         LIVE: destroyed; FORWARDING: the successor destroyed, and the
--         presented key with it; other states: nothing to destroy.
-- Keeps   the index entry goes, and a 'destroy' event is published, in the
--         same step; a replay returns the
--         first execution's reply.
local S = session_header()
local record = ARGV[HEADER + 1]
local earlier = replayed(record)
if earlier then return cjson.decode(earlier) end
local found = resolve(S)
local at = found.at
if not at then return {found.state, 0, '', '', 0, found.state == GONE and replaced(S) or 0} end
local uid = destroy(S, at) or ''
if found.state == FORWARDING then redis.call('DEL', S.key) end
publish(S.events, {event = 'destroy', sid = at.sid, uid = uid ~= '' and uid or nil})
local reply = {found.state, 1, uid, at.sid}
remember(record, cjson.encode(reply))
return reply
