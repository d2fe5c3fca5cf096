-- Argo CD health check for every PlanetKube kind (planetkube.io: Site,
-- Slice, ResourcePool, Ticket, Authority). It reads what kstatus reads
-- (observedGeneration, Reconciling, Stalled) so that Argo CD and Flux agree:
--   Stalled=True                        -> Degraded (needs a change by someone)
--   Reconciling=True, or status behind  -> Progressing
--   a suspended Slice, a disabled Site  -> Suspended (as their owners asked)
--   otherwise                           -> Healthy, with the Ready message
-- argocd-cm.yaml, next to this file, has it under each kind's key
-- (resource.customizations.health.planetkube.io_<Kind>) for argocd-cm.
local hs = { status = "Progressing", message = "Waiting for the controller to report status" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end
local conds = {}
for _, c in ipairs(obj.status.conditions) do
  conds[c.type] = c
end
local function said(c)
  local msg = c.message or ""
  if c.reason ~= nil and c.reason ~= "" then
    msg = c.reason .. ": " .. msg
  end
  return msg
end
if conds.Stalled ~= nil and conds.Stalled.status == "True" then
  return { status = "Degraded", message = said(conds.Stalled) }
end
if conds.Reconciling ~= nil and conds.Reconciling.status == "True" then
  return { status = "Progressing", message = said(conds.Reconciling) }
end
local ready = conds.Ready
if ready == nil then
  return hs
end
if (obj.kind == "Slice" and conds.Suspended ~= nil and conds.Suspended.status == "True")
    or (obj.kind == "Site" and ready.reason == "SiteDisabled") then
  return { status = "Suspended", message = said(ready) }
end
return { status = "Healthy", message = said(ready) }
