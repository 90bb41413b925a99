-- sync: write a user into every live session of that user.
-- KEYS[1] user index key
-- ARGV    uid (decimal), session prefix, user field, user JSON
-- Reply   how many sessions were written.
-- Keeps   only sessions that still hold this uid are written; the index is
--         pruned of the rest in the same step.
local sids = live_sids(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
for _, sid in ipairs(sids) do
  redis.call('HSET', ARGV[2] .. ':' .. sid, ARGV[3], ARGV[4])
end
return #sids
