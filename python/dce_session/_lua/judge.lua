-- judge: carry out the after-grace judgment of a superseded sid.
-- KEYS[1] presented session key; KEYS[2] the new session key (reissue)
-- ARGV    the session header (lib.lua), then: action ('destroy' | 'reissue'),
--         the pointer the judgment saw, the new sid (a judged sid stays
--         refused for the grace period)
-- Reply   found_reply (lib.lua): ROTATED with the reissued sid and its
--         fields; ENDED when the presented sid was judged dead; or, when
--         the key is no longer SUPERSEDED with that pointer (another
--         request judged first), the state found, nothing done.
-- Keeps   compare-and-set on the pointer, so concurrent judges all end on
--         the first one's outcome. 'destroy' leaves a tombstone (an empty
--         pointer) so that the sid keeps being refused, never becoming a
--         newborn (SEMANTICS 3.9); 'reissue' moves the successor's data,
--         which holds every write made through either sid (3.3). Events:
--         'destroy' of the judged sid, 'rotate' of the reissued successor.
local S = session_header()
local action, expected, new_sid, refuse_seconds =
  ARGV[HEADER + 1], ARGV[HEADER + 2], ARGV[HEADER + 3], SETTINGS.grace
local new_key = KEYS[2]
if action == 'reissue' and redis.call('EXISTS', new_key) == 1 then
  return found_reply(S, {at = {key = new_key, sid = new_sid, remaining = S.ttl}}, ROTATED)
end
local found = resolve(S)
if found.state ~= SUPERSEDED or found.pointer ~= expected then return found_reply(S, found) end
if action == 'destroy' then
  redis.call('DEL', S.key)
  redis.call('HSET', S.key, S.pointer, '')
  redis.call('EXPIRE', S.key, refuse_seconds)
  publish(S.events, {event = 'destroy', sid = S.sid})
  return {ENDED, refuse_seconds}
end
local flat = move(S, found.successor, new_key, new_sid, S.ttl, S.key, S.ttl)
publish(S.events, {event = 'rotate', sid = found.successor.sid, new_sid = new_sid})
return found_reply(S, {at = {key = new_key, sid = new_sid, remaining = S.ttl}}, ROTATED, flat)
