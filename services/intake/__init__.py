"""intake: the HTTP service partners post referrals and course events to."""
