-- edgeagent: PowerDNS Recursor "res-north-powerdns-1" RPZ; rendered by `edgeagent render` from the fleet inventory: re-render, do not edit.
-- Transfers from the region's distribution secondaries with the region's key
-- (a BIND key file: the secret stays out of this file). PowerDNS takes no NOTIFY
-- for RPZ: it asks for the SOA every 5 s. The dump file is the last good
-- zone, loaded again at start (fail static).
local function tsig_secret(path)
  local f = assert(io.open(path, 'r'))
  local text = f:read('*a')
  f:close()
  return assert(text:match('secret%s+"([^"]+)"'), path .. ': no secret')
end
local secret = tsig_secret("/etc/powerdns/edgeagent-transfer-north.key")
rpzPrimary({"192.0.2.21:53", "192.0.2.22:53"}, "allow.rpz.invalid", {
    policyName = "allow.rpz.invalid",
    defpol = Policy.NoAction,
    tsigname = "edgeagent-transfer-north", tsigalgo = "hmac-sha256", tsigsecret = secret,
    refresh = 5,
    maxTTL = 0,
    dumpFile = "/var/lib/pdns-recursor/allow.rpz.invalid.zone",
    seedFile = "/var/lib/pdns-recursor/allow.rpz.invalid.zone",
})
rpzPrimary({"192.0.2.21:53", "192.0.2.22:53"}, "block.rpz.invalid", {
    policyName = "block.rpz.invalid",
    tsigname = "edgeagent-transfer-north", tsigalgo = "hmac-sha256", tsigsecret = secret,
    refresh = 5,
    maxTTL = 0,
    dumpFile = "/var/lib/pdns-recursor/block.rpz.invalid.zone",
    seedFile = "/var/lib/pdns-recursor/block.rpz.invalid.zone",
})
