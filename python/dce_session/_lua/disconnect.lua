-- disconnect: remove one connection's binding from its session.
-- KEYS[1] session key (the connection's sid)
-- ARGV    the session header (lib.lua), then the binding block (lib.lua
--         binding_args; its server and client are not used)
-- Reply   1 when the binding was there (in the session, or in the successor
--         of a forwarding sid), else 0.
-- Keeps   the other connections' bindings; $server/$client show one of
--         them, or go with the last.
local S = session_header()
local B = binding_args(HEADER + 1)
local at = resolve(S).at
if not at then return 0 end
return unbind(at.key, B.field, B.server_field, B.client_field, B.id)
