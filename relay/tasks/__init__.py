"""Background tasks of a relay process: SLA escalation, its status report, store upkeep."""
