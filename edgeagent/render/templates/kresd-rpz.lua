-- edgeagent: Knot Resolver 5 (kresd) configuration fragment enforcing the edgeagent RPZ.
-- Knot Resolver reads RPZ from a file only (no zone transfer) and supports only QNAME
-- triggers: rpz-ip entries are ignored. The `zonefile` publisher writes the files; the
-- last argument `true` makes kresd watch each file and reload it when it is renamed in,
-- so the publisher needs no reload command. Placeholders (@NAME@): docs/snippets/knot.md
-- Privacy: no per-query logging; block counts come from the `stats` module.

-- The exception zone first: an allow (rpz-passthru.) beats any block.
policy.add(policy.rpz(policy.PASS, '@ZONE_DIR@/@EXCEPTION_FILE@', true))
policy.add(policy.rpz(policy.DENY_MSG('blocked by policy'), '@ZONE_DIR@/@POLICY_FILE@', true))
