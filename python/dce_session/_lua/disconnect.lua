-- disconnect: remove one connection's binding from its session.
-- KEYS[1] session key (the connection's sid)
-- ARGV    the session header (lib.lua), then the binding block (lib.lua
--         binding_args; its server and client are not used)
-- Reply   1 when the binding was there, else 0. Looked for where the data
--         went: the session, the successor of a rotated sid (forwarding or
--         superseded), or, for the grace period after a login, auto_login
--         or regenerate(destroy_old) elsewhere, the new session (a
--         connection that did not see its sid change can still leave).
-- Keeps   the other connections' bindings; $server/$client show one of
--         them, or go with the last.
local S = session_header()
local B = binding_args(HEADER + 1)
local found = resolve(S)
local at = found.at or found.successor
if not at and found.state == GONE then
  local moved = redis.call('GET', replaced_key(S))
  if moved and is_sid(moved) then at = {key = S.prefix .. ':' .. moved} end
end
if not at then return 0 end
return unbind(at.key, B.field, B.server_field, B.client_field, B.id)
