-- rotate: try_renew of a due sid - load, and rotate when it is live, in one
-- step (self-regenerating sessions, SEMANTICS Part 3).
-- KEYS[1] presented session key; KEYS[2] the new session key
-- ARGV    the session header (lib.lua), then the new sid
-- Reply   found_reply (lib.lua): ROTATED with the new sid and its fields
--         (also for a replay that finds the new key); FORWARDING (rotated
--         by another request, within grace: served by the successor,
--         untouched); SUPERSEDED (a judgment is due: see judge.lua); ENDED;
--         GONE.
-- Keeps   concurrent rotations of one sid converge on ONE new sid (the
--         first rotates, the others find it FORWARDING); the copy and the
--         pointer are one step, so no write is lost; the old key keeps only
--         the pointer, leaves the user index, and gets the session TTL from
--         now, never extended (SEMANTICS 3.2); a 'rotate' event goes out in
--         the same step.
local S = session_header()
local new_key, new_sid = KEYS[2], ARGV[HEADER + 1]
if redis.call('EXISTS', new_key) == 1 then
  return found_reply(S, {at = {key = new_key, sid = new_sid, remaining = S.ttl}}, ROTATED)
end
local fields = redis.call('HGETALL', S.key)
local found = resolve(S, fields)
if found.state ~= LIVE then return found_reply(S, found) end
local flat = move(S, found.at, new_key, new_sid, S.ttl, S.key, S.ttl, fields)
publish(S.events, {event = 'rotate', sid = S.sid, new_sid = new_sid})
return found_reply(S, {at = {key = new_key, sid = new_sid, remaining = S.ttl}}, ROTATED, flat)
