-- sync: write a user into every live session of that user.
-- KEYS[1] user index key
-- ARGV    uid (decimal), session prefix, user field, uid field, pointer
--         field, events channel, user JSON
-- Reply   how many sessions were written.
-- Keeps   only live sessions of this uid are written; the index is pruned
--         of the rest, and a 'sync' event published, in the same step. A
--         replay writes the same again.
local sids = live_sids(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
for _, sid in ipairs(sids) do
  redis.call('HSET', ARGV[2] .. ':' .. sid, ARGV[3], ARGV[7])
end
if #sids > 0 then publish(ARGV[6], {event = 'sync', uid = ARGV[1], sids = sids}) end
return #sids
