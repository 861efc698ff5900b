-- Argo CD health check for keyward.dev/License.
--
-- Healthy:     Active, and Warning (the license works; the message says to renew it)
-- Progressing: not reconciled yet, an older generation, Reconciling=True (a key that starts later)
-- Degraded:    Stalled=True (a refused key, a target Keyward may not write, an invalid spec),
--              Grace (expired; everything still works until the grace period ends), ReadOnly,
--              Invalid
local hs = {}

local function condition(type)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function message_of(type, fallback)
  local c = condition(type)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.status == nil or obj.status.state == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Keyward to verify the license key"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for Keyward to reconcile the latest spec"
  return hs
end

-- kstatus's abnormal-true conditions come first: Stalled, then Reconciling.
for _, abnormal in ipairs({ { "Stalled", "Degraded" }, { "Reconciling", "Progressing" } }) do
  local c = condition(abnormal[1])
  if c ~= nil and c.status == "True" then
    hs.status = abnormal[2]
    hs.message = c.reason .. ": " .. (c.message or "")
    return hs
  end
end

local state = obj.status.state
if state == "Active" then
  hs.status = "Healthy"
  hs.message = message_of("Ready", "The license is valid")
elseif state == "Warning" then
  hs.status = "Healthy"
  hs.message = "Expires soon: " .. message_of("Ready", "renew the license")
elseif state == "Grace" then
  hs.status = "Degraded"
  hs.message = "In grace period: " .. message_of("Ready", "the license has expired")
elseif state == "ReadOnly" then
  hs.status = "Degraded"
  hs.message = "Read-only: " .. message_of("ReadOnly", "the grace period is over")
elseif state == "Invalid" then
  hs.status = "Degraded"
  hs.message = "Invalid: " .. message_of("Valid", "the license key was refused")
elseif state == "Pending" then
  hs.status = "Progressing"
  hs.message = message_of("Valid", "The license key is not valid yet")
else
  hs.status = "Unknown"
  hs.message = "Unknown license state " .. tostring(state)
end
return hs
