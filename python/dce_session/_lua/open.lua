-- open: the first store operation of a session a client presented (a load).
-- KEYS[1] session key
-- ARGV    the session header (lib.lua), then touch (1|0)
-- Reply   found_reply (lib.lua): LIVE or FORWARDING with the remaining TTL
--         (before any touch), the sid acted on and its fields; SUPERSEDED
--         with both remaining TTLs; GONE or ENDED.
-- Keeps   a touch refreshes a live key and its user index entry in the same
--         step. A forwarded load reads the successor without touching it,
--         and nothing extends a rotated key's TTL (SEMANTICS 3.1, 3.2).
local S = session_header()
local found = resolve(S)
if found.state == LIVE and ARGV[HEADER + 1] == '1' then
  touch(S, found.at, redis.call('HGET', S.key, S.user) or nil)
end
return found_reply(found)
