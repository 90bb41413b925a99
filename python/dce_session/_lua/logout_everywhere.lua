-- logout_everywhere: destroy every live session of one user.
-- KEYS[1] user index key
-- ARGV    uid (decimal), session prefix, user field
-- Reply   how many live sessions were destroyed.
-- Keeps   the sessions and the index go in one step.
local sids = live_sids(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
in_slices(function(list, first, last)
  local keys = {}
  for index = first, last do keys[#keys + 1] = ARGV[2] .. ':' .. list[index] end
  redis.call('DEL', unpack(keys))
end, sids)
redis.call('DEL', KEYS[1])
return #sids
