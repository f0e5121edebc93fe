"""caseflow: RQ workers that project the event log into each case's state."""
