-- sync: write a user into every live session of that user.
-- KEYS[1] user index key
-- ARGV    uid (decimal), user JSON
-- Reply   how many sessions were written.
-- Keeps   only live sessions of this uid are written; the index is pruned
--         of the rest, and a 'sync' event published, in the same step. A
--         replay writes the same again.
local sids = live_sids(KEYS[1], ARGV[1], true)
for _, sid in ipairs(sids) do
  redis.call('HSET', SETTINGS.prefix .. ':' .. sid, SETTINGS.user, ARGV[2])
end
if #sids > 0 then publish(SETTINGS.events, {event = 'sync', uid = ARGV[1], sids = sids}) end
return #sids
