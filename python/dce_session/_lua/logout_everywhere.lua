-- logout_everywhere: destroy every live session of one user.
-- KEYS[1] user index key
-- ARGV    uid (decimal), replay record key
-- Reply   how many live sessions were destroyed.
-- Keeps   the sessions and the index go, and a 'logout_everywhere' event is
--         published, in one step (a rotated sid that
--         forwarded to one of them is dead with it); a replay returns the
--         first execution's count.
local earlier = replayed(ARGV[2])
if earlier then return tonumber(earlier) end
local sids = live_sids(KEYS[1], ARGV[1], false)  -- the index goes whole
in_slices(function(list, first, last)
  local keys = {}
  for index = first, last do keys[#keys + 1] = SETTINGS.prefix .. ':' .. list[index] end
  redis.call('DEL', unpack(keys))
end, sids)
redis.call('DEL', KEYS[1])
if #sids > 0 then
  publish(SETTINGS.events, {event = 'logout_everywhere', uid = ARGV[1], sids = sids})
  remember(ARGV[2], #sids)
end
return #sids
