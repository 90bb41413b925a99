"""Framework integrations of dce-session (optional extras; each module imports its framework)."""
