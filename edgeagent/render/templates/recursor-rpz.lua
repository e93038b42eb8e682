-- edgeagent: PowerDNS Recursor 4.8 Lua config (lua-config-file=) enforcing the edgeagent
-- RPZ. Placeholders (@NAME@): docs/snippets/powerdns.md Choose ONE of the two ways per zone.
-- Privacy: no per-query logging here; block counts come from `rec_control get-all`
-- (policy-result-* counters), never from a log of clients' addresses.

-- (1) Fleet path: transfer from the edgeagent hidden primary (named.conf.rpz-primary) by
--     IXFR with the TSIG transfer key; the primary's NOTIFY triggers a refresh.
--     The exception zone comes first so an allow beats any block.
rpzPrimary({"@PRIMARY@"}, "@EXCEPTION_ZONE@", {
    policyName = "edgeagent-exceptions",
    defpol = Policy.NoAction,           -- every entry here means "pass through"
    tsigname = "edgeagent-transfer", tsigalgo = "hmac-sha256", tsigsecret = "@TRANSFER_SECRET@",
    refresh = 60,
    dumpFile = "@WORK_DIR@/@EXCEPTION_FILE@.dump",
    seedFile = "@WORK_DIR@/@EXCEPTION_FILE@.dump",
})
rpzPrimary({"@PRIMARY@"}, "@POLICY_ZONE@", {
    policyName = "edgeagent",
    tsigname = "edgeagent-transfer", tsigalgo = "hmac-sha256", tsigsecret = "@TRANSFER_SECRET@",
    refresh = 60,
    dumpFile = "@WORK_DIR@/@POLICY_FILE@.dump",
    seedFile = "@WORK_DIR@/@POLICY_FILE@.dump",
})

-- (2) Zone files written by the `zonefile` publisher (reload: `rec_control reload-lua-config`):
-- rpzFile("@ZONE_DIR@/@EXCEPTION_FILE@", {policyName = "edgeagent-exceptions", defpol = Policy.NoAction})
-- rpzFile("@ZONE_DIR@/@POLICY_FILE@", {policyName = "edgeagent"})
