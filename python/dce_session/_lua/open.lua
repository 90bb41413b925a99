-- open: the first store operation of a session a client presented (a load).
-- KEYS[1] session key
-- ARGV    the session header (lib.lua), then touch (1|0)
-- Reply   found_reply (lib.lua): LIVE or FORWARDING with the sid acted on
--         and its fields; SUPERSEDED with both remaining TTLs; GONE or
--         ENDED.
-- Keeps   a touch refreshes a live key (and its user index when it would
--         expire first) in the same step. A forwarded load reads the
--         successor without touching it, and nothing extends a rotated
--         key's TTL (SEMANTICS 3.1, 3.2). A live load costs HGETALL, and
--         EXPIRE with a touch (+ one TTL of the index when logged in).
local S = session_header()
local fields = redis.call('HGETALL', S.key)
local found = resolve(S, fields)
if found.state ~= LIVE then return found_reply(S, found) end
if ARGV[HEADER + 1] == '1' then touch(S, found.at) end
return found_reply(S, found, LIVE, fields)
