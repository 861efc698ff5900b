-- Runs an Argo CD health script the way Argo CD does (the resource as the global `obj`, the
-- script's returned table as the verdict), for tests/argocd_health.rs.
--   lua5.1 hack/argocd-health.lua HEALTH_LUA < resource.json
-- prints the status, a tab, and the message.
local cjson = require("cjson")
local script = assert(loadfile(arg[1]))
obj = cjson.decode(io.read("*a"))
local hs = script()
io.write(tostring(hs.status), "\t", tostring(hs.message or ""), "\n")
