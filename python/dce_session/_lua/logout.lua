-- logout: forget a session's user.
-- KEYS[1] session key
-- ARGV    the session header (lib.lua), then the replay record key
-- Reply   {state, logged out (1|0), uid of the user that was logged in or
--         '', sid acted on, the key exists after (1|0), replaced (1|0: as
--         destroy.lua's)}: LIVE and FORWARDING
--         (the successor) act; other states: nothing.
-- Keeps   the index entry and the user field go, and a 'logout' event is
--         published, in one step; a replay
--         returns the first execution's reply.
local S = session_header()
local record = ARGV[HEADER + 1]
local earlier = replayed(record)
if earlier then return cjson.decode(earlier) end
local found = resolve(S)
local at = found.at
if not at then return {found.state, 0, '', '', 0, found.state == GONE and replaced(S) or 0} end
local user = at.user
if not user then return {found.state, 0, '', at.sid, 1} end
local uid = user_id(user, S.uid)
if uid and S.index ~= '' then redis.call('SREM', S.index .. ':' .. uid, at.sid) end
redis.call('HDEL', at.key, S.user)
publish(S.events, {event = 'logout', sid = at.sid, uid = uid})
local reply = {found.state, 1, uid or '', at.sid, redis.call('EXISTS', at.key)}
remember(record, cjson.encode(reply))
return reply
