"""Reports, quarantined notices and appeals: one triage queue for people (see ``base``)."""
