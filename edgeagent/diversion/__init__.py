"""Route diversion: send port-80 traffic for hosts with URL-level entries to the proxy.

Three modules, kept apart so the dangerous part can be tested without a kernel:

* :mod:`~edgeagent.diversion.plan` -- pure: addresses -> the routes the guardrails allow
  (:func:`~edgeagent.diversion.plan.plan_routes`);
* :mod:`~edgeagent.diversion.kernel` -- async netlink: one namespace's policy table and
  rules made to match a plan (:class:`~edgeagent.diversion.kernel.RouteReconciler`);
* :mod:`~edgeagent.diversion.enforcer` -- the daemon's side: the policy's URL hosts
  resolved, planned and reconciled after every policy change and periodically.

Not to be confused with :mod:`edgeagent.api.routes`, the control API's HTTP routes.
"""
