"""Pure domain logic: events, state transitions and date rules. No Redis, no Flask."""
