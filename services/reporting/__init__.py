"""reporting: read models for statistics, a Flask API over them, and the RQ worker that projects them."""
